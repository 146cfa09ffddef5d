"""`rebate-engine`: the command line (replay, seed, admin, worker, demo, simulate, bench)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from agents.report import print_problems, print_summary
from engine import __version__
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import SeedError, load_seed

__all__ = ["main"]

_PROGRESS_MIN_BYTES = 2_000_000  # show a progress bar only when it has something to show


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    code: int = handler(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rebate-engine",
        description="Real-time IB commission, client rebate and JM USD loyalty engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    replay = sub.add_parser("replay", help="replay a recorded fill stream and write the credits")
    replay.add_argument("--seed", required=True, type=Path, help="seed file (YAML or JSON)")
    replay.add_argument(
        "--fills", required=True, type=Path, nargs="+",
        help="fill.v1 JSON lines (one or more files, replayed in order)",
    )  # fmt: skip
    replay.add_argument("--out", required=True, type=Path, help="credit.v1 JSON lines to write")
    replay.add_argument("--events-out", type=Path, help="wallet events (bonus unlocks) to write")
    replay.add_argument("--quiet", action="store_true", help="no tables, no progress bar")
    replay.set_defaults(handler=_replay_offline)
    return parser


def _replay_offline(args: argparse.Namespace) -> int:
    console = Console(stderr=True, quiet=args.quiet)
    try:
        seed = load_seed(args.seed)
    except SeedError as exc:
        # Plain print, never wrapped: the file:line:field must stay on one line for editors/CI.
        print(f"error: bad seed: {exc}", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.fills if not p.is_file()]
    if missing:
        print(f"error: no such fills file: {', '.join(missing)}", file=sys.stderr)
        return 2
    ledger = Ledger.from_seed(seed)
    with ExitStack() as stack:
        out = stack.enter_context(args.out.open("wb"))
        events = stack.enter_context(args.events_out.open("wb")) if args.events_out else None
        lines = _read_lines(args.fills, console, stack)
        result = replay_lines(lines, ledger, out.write,
                              write_event=events.write if events else None)  # fmt: skip
    print_summary(result.summary, console)
    print_problems(result.problems, console)
    console.print(f"wrote {result.summary.credits} credits to {args.out}")
    return 0


def _read_lines(paths: Sequence[Path], console: Console,
                stack: ExitStack) -> Iterator[tuple[str, int, bytes]]:  # fmt: skip
    total = sum(p.stat().st_size for p in paths)
    progress = None
    if total >= _PROGRESS_MIN_BYTES and not console.quiet:
        progress = stack.enter_context(Progress(
            TextColumn("replaying"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(), console=console, transient=True,
        ))  # fmt: skip
    task = progress.add_task("replay", total=total) if progress else None
    for path in paths:
        handle: IO[bytes] = stack.enter_context(path.open("rb"))
        for number, line in enumerate(handle, start=1):
            if progress is not None and task is not None:
                progress.advance(task, len(line))
            yield str(path), number, line


if __name__ == "__main__":
    raise SystemExit(main())

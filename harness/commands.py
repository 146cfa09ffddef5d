"""The `replay` and `demo` commands (entry points of `rebate_engine.commands`).

`replay` runs a recorded fill stream through the engine offline, or through Kafka and real
workers with `--via-kafka`; `demo` is `make demo`: the sample fills through a real worker,
compared with the offline replay.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import IO, Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from agents.cli import seed_or_none
from agents.settings import Settings
from agents.storage.store import load_seed_into
from agents.topics import ensure_topics_sync, partitions
from engine import __version__
from engine.crm import apply_event_lines
from engine.ledger import Ledger
from engine.payouts import payouts_due
from engine.replay import outcome_record, replay_lines
from engine.seed import Seed, load_seed
from engine.summary import Summary
from harness.embedded import services_for
from harness.kafka_replay import Collected, publish_and_collect
from harness.report import print_problems, print_summary
from harness.workers import WorkerProcess

__all__ = ["register_demo", "register_replay"]

_PROGRESS_MIN_BYTES = 2_000_000  # show a progress bar only when it has something to show


def register_replay(subparsers: Any) -> None:
    """Add `replay` to the CLI's subparsers."""
    replay = subparsers.add_parser(
        "replay", help="replay a recorded fill stream and write the credits"
    )
    replay.add_argument("--seed", required=True, type=Path, help="seed file (YAML or JSON)")
    replay.add_argument(
        "--fills",
        required=True,
        type=Path,
        nargs="+",
        help="fill.v1 JSON lines (one or more files, replayed in order)",
    )
    replay.add_argument(
        "--crm-events",
        type=Path,
        help="crm-event.v1 JSON lines (back-office events), applied by their `at` (offline only)",
    )
    replay.add_argument("--out", required=True, type=Path, help="credit.v1 JSON lines to write")
    replay.add_argument("--events-out", type=Path, help="wallet events (bonus unlocks) to write")
    replay.add_argument(
        "--outcomes",
        type=Path,
        help="offline: one JSON line per input line (outcome, reasons, credit ids; every bad "
        "line with its reason)",
    )
    replay.add_argument(
        "--settlements",
        type=Path,
        help="offline: settlement.v1 events to write, one per IB and payout period "
        "(the end of the replay counts as later than every hold)",
    )
    replay.add_argument(
        "--payouts",
        action="store_true",
        help="offline: also write each IB period's tier_bonus credit to --out, after the others",
    )
    replay.add_argument("--quiet", action="store_true", help="no tables, no progress bar")
    replay.add_argument(
        "--via-kafka",
        action="store_true",
        help="publish to fills.v1 and collect credits.v1 from real workers "
        "(embedded broker, Redis and a worker when the env names none)",
    )
    replay.add_argument("--rate", type=float, help="with --via-kafka: publish at N fills/s")
    replay.add_argument(
        "--speed", type=float, help="with --via-kafka: N x the recorded pace (gaps capped at 2 s)"
    )
    replay.add_argument(
        "--workers",
        type=int,
        help="with --via-kafka: local workers to start (default 1 when "
        "embedded, else 0: the deployment's workers are used)",
    )
    replay.add_argument(
        "--no-seed",
        action="store_true",
        help="with --via-kafka: do not load --seed into Redis (already there)",
    )
    replay.set_defaults(handler=_replay)


def register_demo(subparsers: Any) -> None:
    """Add `demo` to the CLI's subparsers."""
    demo = subparsers.add_parser("demo", help="the sample fills through a real worker, end to end")
    demo.add_argument("--seed", type=Path, default=Path("sample/seed.yaml"))
    demo.add_argument(
        "--fills", type=Path, nargs="+", default=sorted(Path("sample/fills").glob("*.fills.jsonl"))
    )
    demo.set_defaults(handler=_demo)


def _replay(args: argparse.Namespace) -> int:
    if args.via_kafka and args.crm_events is not None:
        print("error: --crm-events is offline only (not with --via-kafka) yet", file=sys.stderr)
        return 2
    if args.via_kafka:
        if args.settlements or args.payouts or args.outcomes:
            print(
                "error: --settlements/--payouts/--outcomes are offline only for now",
                file=sys.stderr,
            )
            return 2
        return _replay_via_kafka(args)
    return _replay_offline(args)


def _replay_offline(args: argparse.Namespace) -> int:
    console = Console(stderr=True, quiet=args.quiet)
    seed = seed_or_none(args.seed)
    if seed is None:
        return 2
    missing = [str(p) for p in [*args.fills, args.crm_events] if p and not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    ledger = Ledger.from_seed(seed)
    with ExitStack() as stack:
        if args.crm_events is not None:
            _apply_crm_events(args.crm_events, ledger, console, stack)
        out = stack.enter_context(args.out.open("wb"))
        events = stack.enter_context(args.events_out.open("wb")) if args.events_out else None
        outcomes = stack.enter_context(args.outcomes.open("wb")) if args.outcomes else None
        lines = _read_lines(args.fills, console, stack)
        credits: list[Mapping[str, Any]] = []
        wants_payouts = bool(args.settlements or args.payouts)
        result = replay_lines(
            lines,
            ledger,
            out.write,
            write_event=events.write if events else None,
            on_credit=credits.append if wants_payouts else None,
            on_line=(
                (lambda *a: outcomes.write(orjson.dumps(outcome_record(*a)) + b"\n"))
                if outcomes
                else None
            ),
        )
        if wants_payouts:
            due = payouts_due(credits, ledger.book, engine_version=__version__)
            if args.payouts:
                for credit in due.tier_bonuses:
                    out.write(orjson.dumps(credit) + b"\n")
                    result.summary.add_credit(credit)
            if args.settlements:
                args.settlements.write_bytes(
                    b"".join(orjson.dumps(e) + b"\n" for e in due.settlements)
                )
                console.print(
                    f"wrote {len(due.settlements)} settlement events to {args.settlements}"
                )
    print_summary(result.summary, console)
    print_problems(result.problems, console)
    console.print(f"wrote {result.summary.credits} credits to {args.out}")
    return 0


def _apply_crm_events(path: Path, ledger: Ledger, console: Console, stack: ExitStack) -> None:
    applied = apply_event_lines(_read_lines([path], console, stack), ledger.book)
    direct = ", ".join(f"{reason} {n}" for reason, n in sorted(applied.direct_clients.items()))
    console.print(
        f"applied {applied.applied} back-office events from {path} by their `at`"
        + (f"; direct clients: {direct}" if direct else "")
        + (f"; {applied.duplicates} repeated event_id(s) skipped" if applied.duplicates else "")
    )
    print_problems(applied.problems, console, what="back-office events")


def _read_lines(
    paths: Sequence[Path], console: Console, stack: ExitStack
) -> Iterator[tuple[str, int, bytes]]:
    total = sum(p.stat().st_size for p in paths)
    progress = None
    if total >= _PROGRESS_MIN_BYTES and not console.quiet:
        progress = stack.enter_context(
            Progress(
                TextColumn("replaying"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
        )
    task = progress.add_task("replay", total=total) if progress else None
    for path in paths:
        handle: IO[bytes] = stack.enter_context(path.open("rb"))
        for number, line in enumerate(handle, start=1):
            if progress is not None and task is not None:
                progress.advance(task, len(line))
            yield str(path), number, line


def _read_all(paths: Sequence[Path]) -> list[bytes]:
    return [
        line.rstrip(b"\n") for p in paths for line in p.read_bytes().splitlines() if line.strip()
    ]


def _replay_via_kafka(args: argparse.Namespace) -> int:
    console = Console(stderr=True, quiet=args.quiet)
    seed = seed_or_none(args.seed)
    if seed is None:
        return 2
    lines = _read_all(args.fills)
    settings = Settings()
    embedded = settings.kafka_bootstrap_servers is None or settings.redis_url is None
    workers = args.workers if args.workers is not None else (1 if embedded else 0)
    with services_for(settings) as resolved:
        collected = _run_through_workers(
            resolved,
            seed,
            lines,
            console,
            workers=workers,
            load=not args.no_seed,
            replace=embedded,
            rate=args.rate,
            speed=args.speed,
        )
    args.out.write_bytes(b"".join(c + b"\n" for c in collected.credits))
    summary = _summary_of(collected)
    print_summary(summary, console, title="Replay through Kafka")
    console.print(
        f"wrote {len(collected.credits)} credits to {args.out} "
        f"({collected.published} fills in {collected.seconds:.1f} s)"
    )
    return 0


def _run_through_workers(
    settings: Settings,
    seed: Seed,
    lines: list[bytes],
    console: Console,
    *,
    workers: int,
    load: bool,
    replace: bool,
    rate: float | None = None,
    speed: float | None = None,
) -> Collected:
    ensure_topics_sync(settings, partitions(settings))
    if load:
        asyncio.run(load_seed_into(settings, seed, replace=replace))
    logs = Path(tempfile.mkdtemp(prefix="rebate-workers-"))
    started = [WorkerProcess(settings, logs / f"worker-{i}.log").start() for i in range(workers)]
    try:
        with console.status(f"starting {workers} worker(s)...") if workers else nullcontext():
            for w in started:
                w.wait_ready()
        with Progress(
            TextColumn("publishing fills"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("publish", total=len(lines))
            return asyncio.run(
                publish_and_collect(
                    settings,
                    lines,
                    rate=rate,
                    speed=speed,
                    progress=lambda n: progress.update(task, completed=n),
                )
            )
    finally:
        for w in started:
            w.stop()


def _summary_of(collected: Collected) -> Summary:
    summary = Summary()
    summary.fills = collected.published
    for raw in collected.credits:
        summary.add_credit(orjson.loads(raw))
    summary.outcomes["published"] = collected.published
    for _, headers in collected.dead_letters:
        summary.dead_letters[headers.get("error", "?")] += 1
        summary.reasons[("dead_lettered", headers.get("error", "?"))] += 1
    if collected.dead_letters:
        summary.outcomes["dead_lettered"] = len(collected.dead_letters)
    return summary


def _demo(args: argparse.Namespace) -> int:
    """make demo: embedded broker + Redis, one real Faust worker, the sample fills."""
    console = Console()
    seed = load_seed(args.seed)
    lines = _read_all(args.fills)
    console.rule("rebate-engine demo")
    console.print(f"{len(lines)} recorded fills from {len(args.fills)} files, seed {args.seed}")
    settings = Settings()
    with services_for(settings) as resolved:
        console.print(f"broker {resolved.kafka_bootstrap_servers}, redis {resolved.redis_url}")
        collected = _run_through_workers(
            resolved, seed, lines, console, workers=1, load=True, replace=settings.redis_url is None
        )
    print_summary(_summary_of(collected), console, title="Credited through Kafka")
    offline: list[bytes] = []
    replay_lines(
        [("x", i, line) for i, line in enumerate(lines)], Ledger.from_seed(seed), offline.append
    )
    same = sorted(c + b"\n" for c in collected.credits) == sorted(offline)
    console.print(
        f"{collected.published} fills -> {len(collected.credits)} credits, "
        f"{len(collected.dead_letters)} dead letters in {collected.seconds:.1f} s "
        "through the Faust worker"
    )
    console.print(
        "same credits as the offline replay: " + ("[green]yes[/green]" if same else "[red]NO[/red]")
    )
    return 0 if same else 1

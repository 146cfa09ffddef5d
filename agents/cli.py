"""`rebate-engine`: the command line.

The production commands (worker, seed, topics, admin, statement, reconcile, explain) live here. The
tool commands (replay, simulate, bench, demo) live in the `harness` package and plug in through
the entry point group `rebate_engine.commands`: only the command asked for is loaded (all of
them for `--help`), so the worker never imports the tools, and an image without them simply does not
offer them. Embedded services (no KAFKA_BOOTSTRAP_SERVERS / REDIS_URL) come the same way,
through `rebate_engine.services`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import faust

from agents import admin, explain, statement
from agents.app import build_app
from agents.logs import configure_logging
from agents.settings import Settings
from agents.storage.store import load_seed_into
from agents.topics import ensure_topics_sync, partitions
from agents.tuning import tune_gc
from engine import __version__
from engine.seed import Seed, SeedError, load_seed

__all__ = ["main", "resolved_services", "seed_or_none"]

_COMMANDS = "rebate_engine.commands"
_SERVICES = "rebate_engine.services"


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(_command_named(args_in))
    args = parser.parse_args(args_in)
    tune_gc()
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    code: int = handler(args)
    return code


def _command_named(argv: Sequence[str]) -> str | None:
    """The command word of a command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _tool_commands(command: str | None) -> list[EntryPoint]:
    """The tool commands to register: the one asked for, or every one (help, unknown)."""
    if command in _BUILT_IN:
        return []
    tools = sorted(entry_points(group=_COMMANDS), key=lambda ep: ep.name)
    return [ep for ep in tools if ep.name == command] or tools


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rebate-engine",
        description="Real-time IB commission, client rebate and JM USD loyalty engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    worker = sub.add_parser("worker", help="run a Faust worker (embedded services if none set)")
    worker.set_defaults(handler=_worker)

    seed = sub.add_parser("seed", help="load a seed file into Redis")
    seed.add_argument("file", type=Path)
    seed.add_argument("--replace", action="store_true", help="delete the engine's keys first")
    seed.set_defaults(handler=_seed)

    topics = sub.add_parser("topics", help="create the engine's topics (idempotent)")
    topics.set_defaults(handler=_topics)

    admin.register(sub)
    statement.register(sub)
    explain.register(sub)

    for entry in _tool_commands(command):
        try:
            register: Callable[[Any], object] = entry.load()
        except ModuleNotFoundError:
            continue  # the tools are not installed (the worker image): no such command here
        register(sub)
    return parser


_BUILT_IN = frozenset({"worker", "seed", "topics", "admin", "statement", "reconcile", "explain"})


def seed_or_none(path: Path) -> Seed | None:
    """Load a seed, or say on one plain line (file:line: field: problem) why not."""
    try:
        return load_seed(path)
    except SeedError as exc:
        # Plain print, never wrapped: the file:line:field must stay on one line for editors/CI.
        print(f"error: bad seed: {exc}", file=sys.stderr)
        return None


def resolved_services(settings: Settings) -> AbstractContextManager[Settings]:
    """Settings with every service named: as they are, or with embedded ones for what is unset
    (from the tools, when installed)."""
    if settings.kafka_bootstrap_servers is not None and settings.redis_url is not None:
        return nullcontext(settings)
    for entry in entry_points(group=_SERVICES):
        try:
            services_for: Callable[[Settings], AbstractContextManager[Settings]] = entry.load()
        except ModuleNotFoundError:
            continue
        return services_for(settings)
    raise SystemExit(
        "error: set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL "
        "(embedded services come with the development install)"
    )


def _worker(args: argparse.Namespace) -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    with resolved_services(settings) as resolved:
        ensure_topics_sync(resolved, partitions(resolved))
        engine = build_app(resolved)
        worker = faust.Worker(
            engine.app, loglevel=settings.log_level, quiet=True, override_logging=False
        )
        worker.spinner = None  # it writes terminal escapes to stdout, even when not a tty
        worker.execute_from_commandline()  # returns only when the worker stops
    return 0


def _seed(args: argparse.Namespace) -> int:
    settings = Settings()
    seed = seed_or_none(args.file)
    if seed is None:
        return 2
    if settings.redis_url is None:
        print(
            "error: REDIS_URL is not set (the seed goes into the deployment's Redis)",
            file=sys.stderr,
        )
        return 2
    version = asyncio.run(load_seed_into(settings, seed, replace=args.replace))
    if version is None:
        print(f"{args.file} was loaded before: nothing changed")
    else:
        print(f"loaded {args.file}: {len(seed.changes)} rule items, rules version {version}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.kafka_bootstrap_servers is None:
        print("error: KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return 2
    ensure_topics_sync(settings, partitions(settings))
    print("topics ready: " + ", ".join(sorted(settings.topics.values())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

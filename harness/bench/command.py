"""`rebate-engine bench` (`make bench`): the engine against the raw aiokafka ceiling, side by side.

One run, on the embedded broker and Redis (or the ones the environment names), measures:

1. engine only: `decode_fill` + `Ledger.process` + credit serialization on one core, no I/O;
2. faust: the Faust worker (`rebate-engine worker` as a subprocess, harness/workers.py);
3. plain: a minimal plain-aiokafka batch pipeline doing the same work (harness/bench/plain.py,
   also a subprocess): `getmany` batches into the SAME `FillProcessor.process` (same
   decode, same Redis round trips and Lua script), sends not awaited one by one, one gather,
   then commit;
4. echo: the plain loop with the engine replaced by copies of the fill (about the credits'
   volume): the floor the broker and the client library leave.

Each system is driven at fixed offered loads (1,000 fills/s, five interleaved runs, and
5,000 fills/s, 8 s each) and at its maximum (a backlog of pre-published fills, drained).
Every scenario gets fresh topics, a fresh consumer group and a flushed Redis loaded with the
same generated seed; all systems get the same generated fills. Latency is measured outside
the system under test: the publisher keeps fill index -> send time, a consumer on credits.v1
maps each credit back to its fill by `fill.revision` and takes the first credit's arrival.
The worker's own `rebate_fill_to_credit_seconds` histogram is read as a cross-check. Every
scenario also checks that the credits that arrived are, in number, the ones the offline
engine computes.

Output: a table on the console, `<out-dir>/results.json` (top-level `faust_to_raw_ratio` and
`p99_ratio_at_1000`, every number, machine info) and `<out-dir>/latency_throughput.png`.
`--soak N` instead runs one Faust worker through N fills at a steady rate and reports its RSS
(VmRSS) over time; `--profile` adds a py-spy profile of each system draining a backlog.

A benchmark is measured, not asserted: nothing here fails on a number.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from agents.logs import configure_logging
from agents.tuning import tune_gc
from harness.apache_kafka import missing_tools
from harness.bench.config import FULL, QUICK, SYSTEMS, BenchConfig
from harness.bench.results import run_bench
from harness.bench.soak import run_soak
from harness.bench.systems import BROKERS

__all__ = ["main", "register"]

# -- the command -------------------------------------------------------------------------------


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `bench` to the CLI's subparsers (an entry point of `rebate_engine.commands`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="measure engine-only, Faust worker and plain aiokafka pipeline side by side",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _add_arguments(parser)
    parser.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m harness.bench.command [options]`: the same as `rebate-engine bench`."""
    tune_gc()  # as the console script does, so both entry points measure the same engine
    parser = argparse.ArgumentParser(prog="rebate-engine bench")
    _add_arguments(parser)
    return _bench(parser.parse_args(argv))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run (about a minute, small numbers)"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("bench/out"), help="where results go (bench/out)"
    )
    parser.add_argument(
        "--soak",
        type=int,
        nargs="?",
        const=1_000_000,
        metavar="N",
        help="instead of the comparison: one Faust worker through N fills (default 1,000,000) "
        "at --soak-rate, reporting its RSS at start and end",
    )
    parser.add_argument(
        "--soak-rate", type=float, default=2500.0, help="fills/s during --soak (2500)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile each system draining a backlog with py-spy (<out-dir>/<system>.svg)",
    )
    parser.add_argument(
        "--with-settlement",
        action="store_true",
        help="keep the worker's hourly-settlement timer at its configured interval (by default "
        "the bench runs it hourly: the generated fills' fast clock would make every tick settle "
        "several hours, work the plain pipeline does not do)",
    )
    parser.add_argument("--accounts", type=int, help="accounts in the generated seed")
    parser.add_argument("--engine-fills", type=int, help="fills for the engine-only run")
    parser.add_argument(
        "--loads", help="comma-separated fixed offered loads in fills/s (1000,5000)"
    )
    parser.add_argument("--load-seconds", type=float, help="seconds of each fixed load (8)")
    parser.add_argument(
        "--repeats",
        type=int,
        help="runs of each system at 1,000 fills/s, interleaved; the median p99 is reported (5)",
    )
    parser.add_argument("--max-fills", type=int, help="backlog drained for the max rate (100000)")
    parser.add_argument(
        "--systems", help="comma-separated systems to run: faust,plain,echo (default all)"
    )
    parser.add_argument(
        "--broker",
        choices=("tansu", "kafka", "both"),
        help="run every system on the embedded Tansu, on Apache Kafka (started from the Maven "
        "cache, harness/apache_kafka.py), or on both one after the other (default: both where "
        "java and mvn answer and KAFKA_BOOTSTRAP_SERVERS is unset, else tansu)",
    )


def _config(args: argparse.Namespace) -> BenchConfig:
    base = QUICK if args.quick else FULL
    update: dict[str, Any] = {
        "out_dir": args.out_dir,
        "profile": args.profile,
        "settlement": args.with_settlement,
    }
    if args.accounts is not None:
        update["accounts"] = args.accounts
    if args.engine_fills is not None:
        update["engine_fills"] = args.engine_fills
    if args.loads:
        update["loads"] = tuple(int(x) for x in args.loads.split(",") if x.strip())
    if args.load_seconds is not None:
        update["load_seconds"] = args.load_seconds
    if args.max_fills is not None:
        update["max_fills"] = args.max_fills
    if args.repeats is not None:
        update["latency_repeats"] = max(1, args.repeats)
    if args.systems:
        systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
        unknown = set(systems) - set(SYSTEMS)
        if unknown:
            raise ValueError(f"unknown systems: {', '.join(sorted(unknown))}")
        update["systems"] = systems
    update["brokers"] = _brokers(args.broker)
    fields = {f: getattr(base, f) for f in BenchConfig.__dataclass_fields__}
    return BenchConfig(**{**fields, **update})


def _brokers(wanted: str | None) -> tuple[str, ...]:
    if wanted is None:
        named = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
        why_not = "KAFKA_BOOTSTRAP_SERVERS names the broker" if named else missing_tools()
        if why_not:
            print(f"bench on one broker only: {why_not}", file=sys.stderr)
            return ("tansu",)
        wanted = "both"
    return BROKERS if wanted == "both" else (wanted,)


def _bench(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough for the table, never wrapped
        console = Console(width=160)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging("WARNING")  # aiokafka's INFO chatter would bury the table
    if args.soak is not None:
        run_soak(config, args.soak, args.soak_rate, console)
        return 0
    results = run_bench(config, console)
    wrong = [s for s in results["scenarios"] if not (s["complete"] and s["credits_match"])]
    for s in wrong:  # numbers are measured, not asserted; wrong or missing credits are a failure
        console.print(
            f"[red]{s['system']} at {s['load']}: {s['credits']:,} of {s['expected_credits']:,}"
            " expected credits[/red]"
        )
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())

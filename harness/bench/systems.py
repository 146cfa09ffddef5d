"""The services (embedded or named) and the systems under test: Faust worker, plain loop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.settings import Settings
from agents.storage.store import RedisStore, connect
from engine.seed import Seed
from harness.apache_kafka import ApacheKafka
from harness.embedded import EmbeddedRuntime
from harness.workers import WorkerProcess, settings_env

__all__ = [
    "BROKERS",
    "SETTLEMENT_NOTE",
    "FaustSystem",
    "PlainSystem",
    "Services",
    "System",
    "make_system",
    "reset_redis",
    "running_services",
    "scenario_settings",
]

# -- services ----------------------------------------------------------------------------------


@dataclass
class Services:
    settings: Settings
    embedded: bool  # Redis is ours (flushed between scenarios)
    pids: dict[str, int]  # tansu / kafka / redis-server, when we started them
    broker: str = "tansu"  # "tansu" (embedded), "kafka" (Apache Kafka we started), "external"
    broker_start_s: float | None = None  # Apache Kafka: JVM start to first Metadata answer


BROKERS = ("tansu", "kafka")
KAFKA_HEAP_MB = 768  # more than the tests' 384: the bench keeps 100,000-fill backlogs


@contextlib.contextmanager
def running_services(settings: Settings, broker: str = "tansu") -> Iterator[Services]:
    """The services of one bench run: with `broker="kafka"` Apache Kafka itself
    (harness/apache_kafka.py) replaces the embedded Tansu; Redis is the environment's or ours."""
    if broker == "kafka":
        with ApacheKafka(heap_mb=KAFKA_HEAP_MB) as kafka:
            on_kafka = settings.model_copy(
                update={"kafka_bootstrap_servers": kafka.bootstrap_servers}
            )
            with running_services(on_kafka) as inner:
                pids = {**inner.pids, "kafka": kafka.pid or 0}
                yield Services(inner.settings, inner.embedded, pids, "kafka", kafka.last_start_s)
        return
    need_kafka = settings.kafka_bootstrap_servers is None
    need_redis = settings.redis_url is None
    if not (need_kafka or need_redis):
        yield Services(settings, False, {}, "external")
        return
    with EmbeddedRuntime(kafka=need_kafka, redis=need_redis) as runtime:
        resolved = settings.with_services(
            bootstrap_servers=settings.kafka_bootstrap_servers or runtime.bootstrap_servers,
            redis_url=settings.redis_url or runtime.redis_url,
        )
        yield Services(resolved, need_redis, runtime.pids, "tansu" if need_kafka else "external")


SETTLEMENT_NOTE = (
    "The generated fills' clock runs ~1 simulated hour per real second at 1,000 fills/s, so "
    "the worker's settlement timer (every settlement_interval_s, default 5 s) settles several "
    "closed hours x every IB on each tick, where production settles each hour once: a periodic "
    "stall of the fills agent that the plain pipeline (which does no settlement) never pays. "
    "The bench runs the timer once an hour unless --with-settlement."
)


def scenario_settings(base: Settings, name: str, *, settlement: bool = False) -> Settings:
    update: dict[str, Any] = {
        f"topic_{topic}": f"{name}-{topic.replace('_', '-')}" for topic in base.topics
    }
    update["consumer_group"] = name
    if not settlement:  # see SETTLEMENT_NOTE
        update["settlement_interval_s"] = 3600.0
    return base.model_copy(update=update)


async def reset_redis(services: Services, settings: Settings, seed: Seed) -> None:
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
    """The plain pipeline (harness/bench/plain.py) in a subprocess, configured through the
    environment like the worker.

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
            "import sys; from harness.bench.plain import plain_worker_main as m; "
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


def make_system(name: str, settings: Settings, log_path: Path) -> System:
    if name == "faust":
        return FaustSystem(settings, log_path)
    return PlainSystem(settings, log_path, echo=name == "echo")

"""Helpers of the integration tests that run workers and third-party servers (Prometheus, a TLS
Redis): an isolated deployment (own topics, consumer group and Redis database), the simulated
book and stream, the offline reference, reading a topic back from offset 0, and servers started
and stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
from redis.asyncio import Redis

from agents.settings import Settings
from agents.storage.store import RedisStore
from agents.topics import delete_topics_sync, ensure_topics_sync
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import Seed, parse_seed
from harness.embedded import ManagedProcess
from harness.simulate.generator import generate_fills, generate_seed
from harness.workers import WorkerProcess
from tests.integration import fixtures

__all__ = [
    "Deployment",
    "deployment",
    "load_seed",
    "offline_credits",
    "read_topic",
    "server",
    "simulated",
    "wait_ready",
    "wait_until",
]


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def _flush(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url or "", **settings.redis_client_kwargs())
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class Deployment:
    """An engine deployment of one test: settings, and the workers it started (stopped by PID)."""

    settings: Settings
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, **update: Any) -> WorkerProcess:
        """Start a worker (not waiting for it); `update` overrides settings for it alone."""
        settings = self.settings.model_copy(update=update) if update else self.settings
        log = self.log_dir / f"worker-{len(self.workers)}.log"
        started = WorkerProcess(settings, log).start()
        self.workers.append(started)
        return started

    def stop(self) -> None:
        for w in self.workers:
            w.stop(signal.SIGTERM, timeout_s=15)  # by PID; SIGKILL when it hangs


@contextlib.contextmanager
def deployment(
    settings: Settings,
    log_dir: Path,
    *,
    redis_db: int | None,
    flush: bool = True,
    **update: Any,
) -> Iterator[Deployment]:
    """Own topics and consumer group (unique names), own Redis database (flushed before and
    after), workers stopped by PID and topics deleted at the end.

    `redis_db=None` keeps the URL's database (a private Redis the test started itself).
    """
    tag = uuid.uuid4().hex[:10]
    own: dict[str, Any] = {f"topic_{n}": f"{t}.{tag}" for n, t in settings.topics.items()}
    own["consumer_group"] = f"rebate-{tag}"
    if redis_db is not None:
        assert settings.redis_url is not None
        own["redis_url"] = _with_db(settings.redis_url, redis_db)
    own.update(update)
    mine = settings.model_copy(update=own)
    ensure_topics_sync(mine, dict.fromkeys(mine.topics.values(), mine.topic_partitions))
    if flush:
        _flush(mine)
    deployed = Deployment(mine, log_dir)
    try:
        yield deployed
    finally:
        deployed.stop()
        if flush:
            with contextlib.suppress(Exception):
                _flush(mine)
        with contextlib.suppress(Exception):
            delete_topics_sync(mine, mine.topics.values())


# --- book, stream and reference ----------------------------------------------------------------


def simulated(accounts: int, fills: int, rng_seed: int = 7) -> tuple[Seed, list[bytes]]:
    """A generated book and `fills` fill.v1 lines for it (deterministic)."""
    rng = random.Random(rng_seed)
    seed_dict = generate_seed(accounts, rng)
    start = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
    lines = [orjson.dumps(f) for f in generate_fills(seed_dict, rng, fills, start)]
    return parse_seed(json.dumps(seed_dict), "simulated-seed.json"), lines


def offline_credits(seed: Seed, lines: list[bytes]) -> list[bytes]:
    """The offline replay's credits (engine only, no broker or Redis), one JSON each."""
    out: list[bytes] = []
    replay_lines(
        (("stream", n, line) for n, line in enumerate(lines, 1)), Ledger.from_seed(seed), out.append
    )
    return [c.rstrip(b"\n") for c in out]


async def load_seed(settings: Settings, seed: Seed) -> None:
    client = Redis.from_url(settings.redis_url or "", **settings.redis_client_kwargs())
    try:
        await RedisStore(client).load_seed(seed)
    finally:
        await client.aclose()


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    at_least: int = 0,
    quiet_s: float = 1.0,
    timeout_s: float = 60.0,
) -> list[bytes]:
    """Every value of `topic` from offset 0 of each partition: at least `at_least`, then until
    quiet for `quiet_s` (end offsets are never trusted: Tansu's ListOffsets can trail)."""
    records = await fixtures.read_topic(
        settings, topic, at_least=at_least, quiet_s=quiet_s, timeout_s=timeout_s
    )
    return [r.value for r in records if r.value is not None]


async def wait_until(
    probe: Callable[[], Any], what: str, timeout_s: float, every_s: float = 0.25
) -> Any:
    """Poll a blocking `probe` (in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(probe)
        if last:
            return last
        await asyncio.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s} s (last: {last!r})")


def wait_ready(worker: WorkerProcess, timeout_s: float = 90.0) -> None:
    """`worker.wait_ready()`, retried when /readyz answers 500 instead of JSON.

    Product bug worked around here: while the worker's web server is up but its consumer
    thread is not started, agents/app.py `Engine.readiness()` raises ConsumerNotStarted, so
    /readyz answers a non-JSON 500, on which `WorkerProcess.readiness()` raises
    JSONDecodeError instead of returning None. Drop this wrapper once both are fixed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            worker.wait_ready(max(1.0, deadline - time.monotonic()))
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
        else:
            return


# --- third-party servers ----------------------------------------------------------------------


@contextlib.contextmanager
def server(
    name: str,
    argv: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    log_path: Path,
    *,
    startup_timeout_s: float = 20.0,
) -> Iterator[ManagedProcess]:
    """A server process on a free port, ready when `ready(port)`; stopped by its PID."""
    proc = ManagedProcess(
        name, argv, ready, log_path, startup_timeout_s=startup_timeout_s, stop_timeout_s=5.0
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()

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
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from agents.settings import Settings
from agents.storage.store import RedisStore
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import Seed, parse_seed
from harness.embedded import ManagedProcess
from harness.simulate.generator import generate_fills, generate_seed
from harness.workers import WorkerProcess
from tests.integration import fixtures

__all__ = [
    "load_seed",
    "offline_credits",
    "read_topic",
    "server",
    "simulated",
    "wait_ready",
    "wait_until",
]


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

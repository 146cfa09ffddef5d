"""The pacing publisher: fill.v1 lines to a topic at N fills/s (the simulator and the bench).

The benchmark drives the engine with it too, so both measure the same offered load.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from harness.simulate.generator import generate_fills, generate_seed

__all__ = ["PublishStats", "fill_lines", "publish_paced", "write_seed"]

_PROGRESS_EVERY_S = 1.0
_YIELD_EVERY = 200  # sends between forced yields when behind schedule (lets the sender run)
_UNLIMITED = sys.maxsize


@dataclass
class PublishStats:
    """What a paced publish did; updated live (progress callbacks read it)."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_error: BaseException | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def fill_lines(
    seed_dict: dict[str, Any], count: int | None, *, random_seed: int, start: datetime
) -> Iterator[tuple[bytes, bytes]]:
    """(key, fill.v1 JSON) pairs for the seed's accounts; unlimited when `count` is None."""
    rng = random.Random(f"rebate-engine/bridge/fills/{random_seed}")
    for fill in generate_fills(seed_dict, rng, _UNLIMITED if count is None else count, start):
        yield f"{fill['server']}:{fill['login']}".encode(), orjson.dumps(fill)


def write_seed(path: Path, accounts: int, *, random_seed: int) -> dict[str, Any]:
    """Generate a seed for `accounts` accounts, write it as JSON (a valid seed file), return it."""
    rng = random.Random(f"rebate-engine/bridge/seed/{random_seed}")
    seed_dict = generate_seed(accounts, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(seed_dict, option=orjson.OPT_INDENT_2) + b"\n")
    return seed_dict


async def publish_paced(
    producer: AIOKafkaProducer,
    topic: str,
    items: Iterable[tuple[bytes, bytes]],
    *,
    rate: float | None,
    on_send: Callable[[int], None] | None = None,
    progress: Callable[[PublishStats], None] | None = None,
    stop: asyncio.Event | None = None,
) -> PublishStats:
    """Publish (key, value) pairs at `rate` messages/s (flat out when None), then wait for
    every acknowledgement.

    Fill i is due at `start + i / rate`: a late sender catches up instead of drifting, so the
    offered load over the run is the rate asked for. `on_send(i)` runs right before fill i is
    handed to the producer (the benchmark records send times with it); `progress` runs about
    once a second; `stop` ends the run early (Ctrl-C).
    """
    stats = PublishStats()
    pending: set[asyncio.Future[Any]] = set()

    def acked(future: asyncio.Future[Any]) -> None:
        pending.discard(future)
        if future.cancelled() or future.exception() is not None:
            stats.failed += 1
            if stats.first_error is None and not future.cancelled():
                stats.first_error = future.exception()
        else:
            stats.acked += 1

    start = time.monotonic()
    next_progress = start + _PROGRESS_EVERY_S
    since_yield = 0
    for i, (key, value) in enumerate(items):
        if stop is not None and stop.is_set():
            break
        now = time.monotonic()
        if rate:
            ahead = start + i / rate - now
            if ahead > 0:
                await asyncio.sleep(ahead)
                since_yield = 0
        since_yield += 1
        if since_yield >= _YIELD_EVERY:
            await asyncio.sleep(0)
            since_yield = 0
        if on_send is not None:
            on_send(i)
        future = await producer.send(topic, value, key=key)
        pending.add(future)
        future.add_done_callback(acked)
        stats.sent += 1
        if progress is not None and now >= next_progress:
            now = time.monotonic()
            stats.seconds = now - start
            progress(stats)
            next_progress = now + _PROGRESS_EVERY_S
        if stats.first_error is not None:
            break
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    stats.seconds = time.monotonic() - start
    return stats

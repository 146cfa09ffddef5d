"""Replay through Kafka: publish a recorded fill stream to fills.v1 and collect what the
workers emit, until the consumer group has committed every published fill.

Because workers commit a fill's offset only after its credits are acknowledged (SPEC 7),
"committed up to the end" means every credit is already in credits.v1: the collector then
reads credits.v1 and fills.v1.dlq up to their current ends, and is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.settings import Settings
from engine.errors import BadFill
from engine.fill import decode_fill

__all__ = ["Collected", "publish_and_collect"]

_BROKER_OUTAGE_MS = 120_000
_MAX_GAP_S = 2.0  # with --speed, a quiet night in the recording is not replayed as a quiet night


@dataclass
class Collected:
    credits: list[bytes] = field(default_factory=list)
    """Every credit for the published fills, first copy of each credit_id, in arrival order."""
    redelivered: int = 0
    """Further copies of a credit_id already collected (a worker re-published after a crash)."""
    dead_letters: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    published: int = 0
    seconds: float = 0.0


def fill_key(line: bytes) -> bytes:
    """Kafka key "{server}:{login}" so one partition owns an account (SPEC 2, 7)."""
    try:
        data = orjson.loads(line)
        return f"{data['server']}:{data['login']}".encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return b"unparseable"  # still published: the worker dead-letters it with the reason


def _revision(line: bytes) -> str | None:
    try:
        return decode_fill(line).revision
    except BadFill:
        return None


async def publish_and_collect(
    settings: Settings,
    lines: Sequence[bytes],
    *,
    rate: float | None = None,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
    timeout_s: float = 600.0,
    quiet_s: float = 1.0,
) -> Collected:
    """Publish `lines` to fills.v1 (at `rate` fills/s, or `speed` x recorded time, or flat
    out), then collect credits/dead letters/wallet events the workers produce for them.

    Tansu's ListOffsets answers can trail the log end, so nothing here trusts end offsets:
    the fills' own offsets come from the producer's acknowledgements, and the output topics
    are read until they stay quiet once the group has committed every published fill. Outputs
    are kept only when they belong to a published fill (by revision, or DLQ origin offset).
    """
    security = settings.aiokafka_security_kwargs()
    bootstrap = settings.kafka_bootstrap_servers
    outputs = (settings.topic_credits, settings.topic_fills_dlq, settings.topic_wallet_events)
    # A broker restart can reset the reader's positions (aiokafka's default: to the end, which
    # skips every credit still to come); from the start, the filters below drop what is not ours.
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security,
    )
    # Unacknowledged batches are retried until this timeout: long enough to ride out a broker
    # restart (Apache Kafka takes 10-30 s on a busy machine) instead of failing the replay.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        acks="all",
        request_timeout_ms=_BROKER_OUTAGE_MS,
        **security,
    )
    watcher = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        **security,
    )
    await asyncio.gather(reader.start(), producer.start(), watcher.start())
    collected = Collected(published=len(lines))
    revisions = {r for r in map(_revision, lines) if r is not None}
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        # The producer waits for each topic's metadata; the consumer's topics() did not fill
        # its own partition table on Apache Kafka (only Tansu's answer happened to).
        tps = [tp for topic in outputs for tp in await _partitions(producer, topic)]
        starts = await reader.end_offsets(tps) if tps else {}  # may trail: filtered below
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, starts.get(tp, 0))
        ends, origins = await _publish(producer, settings.topic_fills, lines, rate, speed, progress)
        await _wait_committed(watcher, ends, deadline)
        # Everything committed is written: read at least up to these ends (they may trail, so
        # then until quiet). Without the floor, a reader still reconnecting after a broker
        # restart would see a quiet second and stop before its first record.
        ends_now = await reader.end_offsets(tps) if tps else {}
        floor = {tp: end for tp, end in ends_now.items() if end > starts.get(tp, 0)}
        await _read_until_quiet(
            reader, collected, outputs, revisions, origins, floor, quiet_s, deadline
        )
    finally:
        await asyncio.gather(reader.stop(), producer.stop(), watcher.stop())
    collected.seconds = time.monotonic() - started
    return collected


async def _partitions(producer: AIOKafkaProducer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]


async def _publish(
    producer: AIOKafkaProducer,
    topic: str,
    lines: Sequence[bytes],
    rate: float | None,
    speed: float | None,
    progress: Callable[[int], None] | None,
) -> tuple[dict[TopicPartition, int], set[tuple[int, int]]]:
    """Publish; return the end offset reached per partition and every (partition, offset)."""
    start = time.monotonic()
    previous_close: datetime | None = None
    due = 0.0
    futures = []
    for i, line in enumerate(lines):
        if rate:
            due = i / rate
        elif speed:
            close = _close_time(line)
            if close is not None and previous_close is not None:
                gap = (close - previous_close).total_seconds() / speed
                due += min(max(gap, 0.0), _MAX_GAP_S)
            previous_close = close or previous_close
        if rate or speed:
            wait = start + due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        futures.append(await producer.send(topic, line, key=fill_key(line)))
        if progress is not None and i % 500 == 0:
            progress(i)
    sent = await asyncio.gather(*futures)
    if progress is not None:
        progress(len(lines))
    ends: dict[TopicPartition, int] = {}
    for meta in sent:
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return ends, {(meta.partition, meta.offset) for meta in sent}


def _close_time(line: bytes) -> datetime | None:
    try:
        return datetime.fromisoformat(orjson.loads(line)["close_time"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def _wait_committed(
    watcher: AIOKafkaConsumer, ends: dict[TopicPartition, int], deadline: float
) -> None:
    """Wait until the workers' group has committed every partition up to `ends`."""
    while True:
        behind = 0
        for tp, end in ends.items():
            committed = await watcher.committed(tp)
            behind += max(0, end - (committed or 0))
        if behind == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers still {behind} fills behind; are they running?")
        await asyncio.sleep(0.25)


async def _read_until_quiet(
    reader: AIOKafkaConsumer,
    collected: Collected,
    topics: tuple[str, str, str],
    revisions: set[str],
    origins: set[tuple[int, int]],
    floor: dict[TopicPartition, int],
    quiet_s: float,
    deadline: float,
) -> None:
    """Every credit is written before its fill's offset is committed, so once committed the
    outputs only need draining: read until nothing arrives for `quiet_s`."""
    credits_topic, dlq_topic, _ = topics
    seen: set[str] = set()  # credit and event ids: a crash may have re-published them
    seen_origins: set[tuple[int, int]] = set()
    last_data = time.monotonic()
    short = dict(floor)  # partitions not yet read up to their floor
    while short or time.monotonic() - last_data < quiet_s:
        if time.monotonic() > deadline:
            raise TimeoutError("output topics kept growing past the deadline")
        batches = await reader.getmany(timeout_ms=100, max_records=5000)
        if batches:
            last_data = time.monotonic()
        for messages in batches.values():
            for m in messages:
                tp = TopicPartition(m.topic, m.partition)
                if short.get(tp, 0) <= m.offset + 1:
                    short.pop(tp, None)
                if m.value is None:
                    continue
                if m.topic == credits_topic:
                    credit = orjson.loads(m.value)
                    # A tier bonus belongs to an IB period, not to a published fill: the
                    # settlement timer writes it (tests read the topic for it).
                    if credit["fill"] is None or credit["fill"]["revision"] not in revisions:
                        continue
                    if credit["credit_id"] in seen:
                        collected.redelivered += 1
                        continue
                    seen.add(credit["credit_id"])
                    collected.credits.append(m.value)
                elif m.topic == dlq_topic:
                    headers = {k: v.decode(errors="replace") for k, v in m.headers or ()}
                    origin = (
                        int(headers.get("original_partition", -1)),
                        int(headers.get("original_offset", -1)),
                    )
                    if origin in origins and origin not in seen_origins:
                        seen_origins.add(origin)
                        collected.dead_letters.append((m.value, headers))
                else:
                    event_id = orjson.loads(m.value).get("event_id")
                    if event_id not in seen:
                        seen.add(event_id)
                        collected.events.append(m.value)

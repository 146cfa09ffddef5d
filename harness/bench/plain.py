"""The plain aiokafka pipeline (its own process): the same FillProcessor, no Faust."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import generate_latest

from agents.fills import FillProcessor
from agents.logs import configure_logging
from agents.messages import BatchResult, Outgoing, Record, Topics
from agents.metrics import Metrics
from agents.settings import Settings
from agents.storage.store import RedisStore, connect
from agents.topics import output_topics
from engine.errors import BadFill
from engine.fill import decode_fill
from harness.bench.config import ECHO_MESSAGES

__all__ = ["plain_worker_main"]

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
        for n in range(ECHO_MESSAGES):
            value = orjson.dumps(
                {"credit_id": f"{revision}/{n}", "fill": {"revision": revision}, "echo": raw}
            )
            result.credits.append(Outgoing(topics.credits, f"{revision}/{n}".encode(), value))
        if record.timestamp_ms is not None:
            result.timestamps_ms.append(record.timestamp_ms)
    return result

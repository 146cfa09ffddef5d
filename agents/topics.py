"""The one topic list (built from Settings) and topic admin: create, wait, delete.

Every topic the engine uses is named in `Settings.topics`; the worker, the `topics` command,
the tools and the tests all create exactly that list here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code
from aiokafka.structs import ConsumerRecord

from agents.logs import scrub
from agents.messages import Topics
from agents.settings import Settings

__all__ = [
    "KafkaUnreachable",
    "TopicError",
    "delete_topics",
    "delete_topics_sync",
    "ensure_topics",
    "ensure_topics_sync",
    "output_topics",
    "partitions",
    "read_topic",
    "run_sync",
]

_T = TypeVar("_T")
_DIAGNOSE_TIMEOUT_MS = 5000


class TopicError(RuntimeError):
    """A topic is missing, not ready, or has another partition count than wanted."""


class KafkaUnreachable(RuntimeError):
    """No bootstrap server accepted a connection; the message says why, on one line."""


def partitions(settings: Settings) -> dict[str, int]:
    """{topic name: partitions} of every topic the engine uses.

    The back-office topics have one partition: their events are one total order (SPEC 3 r2).
    """
    counts = dict.fromkeys(settings.topics.values(), settings.topic_partitions)
    counts[settings.topic_crm_events] = counts[settings.topic_crm_events_dlq] = 1
    return counts


def output_topics(settings: Settings) -> Topics:
    """The topics the fill processor publishes to."""
    return Topics(settings.topic_credits, settings.topic_fills_dlq, settings.topic_wallet_events)


def run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    # A fresh loop in a worker thread works whether or not the caller is inside a loop
    # (CLI, pytest session fixture, or an async test).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topics") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def ensure_topics(
    target: Settings | str,
    topics: Mapping[str, int],
    *,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create `topics` ({name: partitions}) unless they exist; idempotent.

    `target` is a Settings (its bootstrap servers and security) or a plain bootstrap string.
    An existing topic with another partition count is an error, not something to paper over:
    the partition count decides which partition owns an account.
    """
    if isinstance(target, Settings):
        replication = replication_factor or target.topic_replication_factor
    else:
        replication = replication_factor or 1
    admin = await _admin(target)
    try:
        # CreateTopics before any metadata lookup by name: Tansu (and Kafka with
        # auto.create.topics.enable) would create a named, missing topic with its default count.
        response = await admin.create_topics(
            [NewTopic(name, count, replication) for name, count in topics.items()],
            timeout_ms=int(timeout_s * 1000),
        )
        for name, code, *message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"creating topic {name}: {message}")
        await _wait_for_partitions(admin, topics, timeout_s)
    finally:
        await admin.close()


async def _admin(target: Settings | str) -> Any:
    if isinstance(target, Settings):
        if target.kafka_bootstrap_servers is None:
            raise TopicError("settings have no kafka_bootstrap_servers")
        admin = AIOKafkaAdminClient(
            bootstrap_servers=target.kafka_bootstrap_servers, **target.aiokafka_security_kwargs()
        )
    else:
        admin = AIOKafkaAdminClient(bootstrap_servers=target)
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        if not isinstance(target, Settings):
            raise
        # aiokafka tries each bootstrap server once and then says only "Unable to bootstrap":
        # one more connection of our own gives the cause (bad password, untrusted CA...).
        raise KafkaUnreachable(await _unreachable_reason(target)) from exc
    return admin


async def _unreachable_reason(settings: Settings) -> str:
    servers = settings.kafka_bootstrap_servers or ""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    how: str = settings.kafka_security_protocol
    if how.startswith("SASL_"):
        how += f", {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username}"
    try:
        conn = await create_conn(
            host,
            int(port),
            request_timeout_ms=_DIAGNOSE_TIMEOUT_MS,
            **settings.aiokafka_security_kwargs(),
        )
    except Exception as exc:  # every failure is the answer we are after
        cause = f"{type(exc).__name__}: {exc}"
    else:
        conn.close()
        cause = "the first server answers now; the others did not"
    return scrub(f"cannot connect to Kafka at {servers} ({how}): {cause}")


async def delete_topics(target: Settings | str, names: Iterable[str]) -> None:
    """Delete topics (test clean-up); missing ones are ignored."""
    admin = await _admin(target)
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


def delete_topics_sync(target: Settings | str, names: Iterable[str]) -> None:
    """`delete_topics` for sync callers."""
    run_sync(lambda: delete_topics(target, names))


async def _wait_for_partitions(admin: Any, topics: Mapping[str, int], timeout_s: float) -> None:
    # Creation is asynchronous on a real cluster: poll until every partition has a leader.
    deadline = time.monotonic() + timeout_s
    while True:
        # No names: the all-topics request lists and never creates.
        described = {t["topic"]: t for t in await admin.describe_topics(None)}
        pending = []
        for name, wanted in topics.items():
            topic = described.get(name)
            partitions = [] if topic is None else topic["partitions"]
            ready = [p for p in partitions if p["error_code"] == 0 and p["leader"] >= 0]
            if topic is not None and topic["error_code"] == 0 and len(ready) == len(partitions):
                if len(partitions) != wanted:
                    raise TopicError(
                        f"topic {name} has {len(partitions)} partitions, {wanted} wanted"
                    )
                continue
            pending.append(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicError(f"topics not ready after {timeout_s} s: {pending}")
        await asyncio.sleep(0.1)


def ensure_topics_sync(
    target: Settings | str,
    topics: Mapping[str, int],
    *,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
) -> None:
    """`ensure_topics` for sync callers (CLI, pytest fixtures)."""
    run_sync(
        lambda: ensure_topics(
            target, topics, replication_factor=replication_factor, timeout_s=timeout_s
        )
    )


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    at_least: int = 0,
    quiet_s: float = 1.0,
    timeout_s: float = 60.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from offset 0: at least `at_least`, then until quiet for `quiet_s`.

    Never from end offsets (Tansu's ListOffsets can trail the log end); no consumer group, so
    reading commits nothing (statements, reconciliation and the tests read this way).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **settings.aiokafka_security_kwargs(),
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        count = partitions(settings).get(topic, settings.topic_partitions)
        assigned = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(assigned)
        for tp in assigned:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while len(records) < at_least or time.monotonic() - last < quiet_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(records)} records, {at_least} expected")
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if batches:
                last = time.monotonic()
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records

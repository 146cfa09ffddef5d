"""The embedded runtime (and whatever the session's services are) behave like Kafka and Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agents.settings import Settings
from agents.topics import TopicError, ensure_topics
from harness.embedded import EmbeddedRuntime


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_produce_consume_round_trip(
    settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("round-trip", partitions=4)
    n = 2_000
    security = settings.aiokafka_security_kwargs()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, **security)
    await producer.start()
    try:
        for i in range(n):
            await producer.send(
                topic, f"v{i}".encode(), key=f"k{i % 37}".encode(), headers=[("n", str(i).encode())]
            )
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **security,
    )
    await consumer.start()
    seen: dict[bytes, tuple[bytes | None, list[tuple[str, bytes]]]] = {}
    try:
        async with asyncio.timeout(60):
            while len(seen) < n:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        seen[record.value] = (record.key, list(record.headers))
        await consumer.commit()
    finally:
        await consumer.stop()

    assert len(seen) == n
    assert seen[b"v1234"] == (f"k{1234 % 37}".encode(), [("n", b"1234")])  # key, headers kept


async def test_redis_answers(settings: Settings) -> None:
    assert settings.redis_url is not None
    client = aioredis.from_url(settings.redis_url, **settings.redis_client_kwargs())
    try:
        assert await client.ping()
        await client.set("rebate:test:ping", "pong", ex=60)
        assert await client.get("rebate:test:ping") == b"pong"
    finally:
        await client.aclose()


async def test_topics_created_with_requested_partitions(
    settings: Settings, unique_name: Callable[[str], str]
) -> None:
    wanted = {unique_name("eight"): 8, unique_name("three"): 3}
    await ensure_topics(settings, wanted)
    await ensure_topics(settings, wanted)  # idempotent

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **settings.aiokafka_security_kwargs()
    )
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(None)}
        await admin.delete_topics(list(wanted))
    finally:
        await admin.close()
    assert {name: described.get(name) for name in wanted} == wanted


async def test_existing_topic_with_other_partition_count_is_an_error(
    settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("fixed", partitions=2)
    with pytest.raises(TopicError, match="has 2 partitions, 4 wanted"):
        await ensure_topics(settings, {topic: 4})


def test_stop_leaves_no_process_behind() -> None:
    runtime = EmbeddedRuntime()
    with runtime:
        pids = runtime.pids
        log_dir = runtime.log_dir
        assert set(pids) == {"tansu", "redis-server"}
        assert all(_pid_alive(pid) for pid in pids.values())
    assert not any(_pid_alive(pid) for pid in pids.values())
    assert runtime.pids == {}
    assert not log_dir.exists()
    runtime.stop()  # idempotent


def test_stop_kills_a_paused_process() -> None:
    # A SIGSTOPped server keeps SIGTERM pending; stop() must still reap it.
    with EmbeddedRuntime(kafka=False) as runtime:
        assert runtime.redis is not None
        pid = runtime.redis.pid
        assert pid is not None
        runtime.redis.pause()
    assert not _pid_alive(pid)


async def test_sigstop_and_sigcont_of_redis(embedded_runtime: EmbeddedRuntime) -> None:
    proc = embedded_runtime.redis
    if proc is None:
        pytest.skip("Redis is not embedded in this session")
    client = aioredis.from_url(
        embedded_runtime.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    try:
        assert await client.ping()
        proc.pause()
        with pytest.raises((TimeoutError, aioredis.TimeoutError, aioredis.ConnectionError)):
            await client.ping()
        proc.resume()
        async with asyncio.timeout(5):
            while True:
                try:
                    assert await client.ping()
                    break
                except (aioredis.TimeoutError, aioredis.ConnectionError):
                    await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def test_redis_restart_keeps_its_url(embedded_runtime: EmbeddedRuntime) -> None:
    proc = embedded_runtime.redis
    if proc is None:
        pytest.skip("Redis is not embedded in this session")
    url, old_pid = embedded_runtime.redis_url, proc.pid
    assert old_pid is not None
    proc.restart()
    assert proc.pid != old_pid
    assert not _pid_alive(old_pid)
    client = aioredis.from_url(url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()

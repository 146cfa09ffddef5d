"""The Apache Kafka test runtime (harness/apache_kafka.py): acknowledged records survive a kill -9
and a restart on the same log dir and ports, and stopping leaves no process behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from agents.settings import Settings
from harness import apache_kafka
from harness.apache_kafka import ApacheKafka
from tests.integration.fixtures import read_topic


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.brokers("kafka")
@pytest.mark.timeout(240)
async def test_acknowledged_records_survive_kill_9_and_restart(
    kafka_broker: ApacheKafka, settings: Settings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("survive", partitions=settings.topic_partitions)
    sent = [f"record-{i}".encode() for i in range(200)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for value in sent:
            await producer.send(topic, value, key=value)
        await producer.flush()
    finally:
        await producer.stop()
    before = (kafka_broker.bootstrap_servers, kafka_broker.pid)

    kafka_broker.kill()
    assert before[1] is not None and _gone(before[1])
    assert not kafka_broker.running
    kafka_broker.start()

    assert kafka_broker.bootstrap_servers == before[0] and kafka_broker.pid != before[1]
    records = await read_topic(settings, topic, at_least=len(sent), quiet_s=0.5)
    assert sorted(r.value or b"" for r in records) == sorted(sent)


@pytest.mark.brokers("kafka")
@pytest.mark.timeout(180)
def test_stop_leaves_no_process_and_no_files(broker: str) -> None:
    # A second node of its own (the session's keeps running): `broker` only ties the test to
    # the sessions that run Apache Kafka.
    kafka = ApacheKafka()
    with kafka:
        pid, work_dir = kafka.pid, kafka.work_dir
        assert pid is not None and (kafka.data_dir / "meta.properties").exists()
    assert _gone(pid)
    assert not work_dir.exists()
    kafka.stop()  # idempotent


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xf8 as the first byte encodes to "-" in URL-safe base64: the first draw must be refused.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(apache_kafka.uuid, "uuid4", lambda: next(draws))
    assert apache_kafka._cluster_id() == "EAAAAAAAAAAAAAAAAAAAAA"

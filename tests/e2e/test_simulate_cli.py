"""`rebate-engine simulate`, the bridge simulator: to a JSON-lines file, and to a real broker."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.seed import load_seed
from harness.embedded import EmbeddedRuntime
from harness.simulate import command as simulate_command
from schemas import validate

START = "2024-06-03T00:00:00Z"


def simulate(*argv: str) -> int:
    """Run `rebate-engine simulate ARGV` through the command's own `register` hook."""
    parser = argparse.ArgumentParser(prog="rebate-engine")
    simulate_command.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv])
    code: int = args.handler(args)
    return code


def test_out_writes_count_valid_fills_that_the_written_seed_attributes(tmp_path: Path) -> None:
    out, seed_path = tmp_path / "fills.jsonl", tmp_path / "seed.json"
    code = simulate(
        "--accounts", "60", "--count", "3000", "--out", str(out), "--seed-out", str(seed_path),
        "--start", START,
    )  # fmt: skip
    assert code == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 3000
    ledger = Ledger.from_seed(load_seed(seed_path))
    outcomes: Counter[str] = Counter()
    reasons: Counter[str | None] = Counter()
    credits = 0
    for line in lines:
        validate("fill.v1", orjson.loads(line))
        settlement = ledger.process(decode_fill(line))
        outcomes[settlement.outcome] += 1
        reasons[settlement.reason] += 1
        credits += len(settlement.credits)
    # Attributable: most fills earn credits under the written seed; a login unknown to the
    # seed is the simulator's deliberate rare case (an account opened after the seed).
    assert outcomes["credited"] > len(lines) // 2
    assert reasons["unattributed"] < len(lines) * 0.02
    assert credits > len(lines)


def test_same_random_seed_same_output(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.jsonl"
        seed = tmp_path / f"{run}.seed.json"
        argv = ("--accounts", "20", "--count", "200", "--out", str(out), "--seed-out", str(seed))
        assert simulate(*argv, "--start", START, "--random-seed", "3") == 0
        outputs.append((seed.read_bytes(), out.read_bytes()))
    assert outputs[0] == outputs[1]


def test_without_a_broker_it_says_how_to_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert simulate("--count", "10", "--seed-out", str(tmp_path / "seed.json")) == 2
    err = capsys.readouterr().err
    assert "KAFKA_BOOTSTRAP_SERVERS" in err
    assert "--out" in err


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with EmbeddedRuntime(redis=False) as runtime:
        yield runtime.bootstrap_servers


async def _read(bootstrap: str, topic: str, partitions: int, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        messages: list[object] = []
        for _ in range(200):
            batches = await consumer.getmany(timeout_ms=100)
            messages += [m for batch in batches.values() for m in batch]
            if len(messages) >= count:
                break
        return messages
    finally:
        await consumer.stop()


@pytest.mark.integration
def test_publishes_count_fills_at_the_rate_keyed_by_account(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"fills-simulate-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker)
    monkeypatch.setenv("REBATE_TOPIC_FILLS", topic)
    monkeypatch.setenv("REBATE_TOPIC_PARTITIONS", "4")
    code = simulate(
        "--rate", "200", "--accounts", "30", "--count", "150", "--seed-out",
        str(tmp_path / "seed.json"),
    )  # fmt: skip
    assert code == 0
    messages = asyncio.run(_read(broker, topic, 4, 150))
    assert len(messages) == 150
    for m in messages:
        data = orjson.loads(m.value)  # type: ignore[attr-defined]
        validate("fill.v1", data)
        assert m.key == f"{data['server']}:{data['login']}".encode()  # type: ignore[attr-defined]
    # 150 fills at 200/s: the last one is due 0.745 s after the first (Kafka create times).
    stamps = sorted(m.timestamp for m in messages)  # type: ignore[attr-defined]
    assert stamps[-1] - stamps[0] >= 600
    assert {m.partition for m in messages} <= set(range(4))  # type: ignore[attr-defined]

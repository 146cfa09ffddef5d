"""Two workers in one consumer group share the fills partitions; when one is killed -9 in the
middle of a steady stream, the other takes over every partition and nothing is lost or
credited twice with different contents (README, Operations: Scaling out; SPEC 7)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import orjson
import pytest

from agents.settings import Settings
from harness.kafka_replay import publish_and_collect
from harness.workers import WorkerProcess
from tests.integration._helpers import (
    load_seed,
    offline_credits,
    read_topic,
    simulated,
    wait_ready,
    wait_until,
)
from tests.integration.fixtures import deploy

_PARTITIONS = 8
_FILLS = 3_000
_RATE = 250.0  # fills/s: a 12 s stream
_KILL_AFTER_S = 4.0


def _assigned(worker: WorkerProcess) -> int:
    try:
        state = worker.readiness() or {}
    except ValueError:  # a non-JSON 500 from /readyz: see _helpers.wait_ready
        return 0
    return int(state.get("partitions_assigned", 0))


def _fills_consumed(worker: WorkerProcess) -> float:
    total = 0.0
    for line in worker.metrics_text().splitlines():
        if line.startswith("rebate_fills_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.timeout(150)
async def test_kill_one_of_two_workers_mid_stream(settings: Settings, tmp_path: Path) -> None:
    seed, lines = simulated(accounts=300, fills=_FILLS)
    expected = offline_credits(seed, lines)
    with deploy(settings, "scale-out", tmp_path, redis_db=13, topic_partitions=_PARTITIONS) as dep:
        await load_seed(dep.settings, seed)
        first, second = dep.start_worker(wait=False), dep.start_worker(wait=False)
        await asyncio.gather(
            asyncio.to_thread(wait_ready, first), asyncio.to_thread(wait_ready, second)
        )

        # Both ready is not the end of the rebalance: wait until the split has settled.
        def shared() -> tuple[int, int] | None:
            split = (_assigned(first), _assigned(second))
            return split if min(split) > 0 and sum(split) == _PARTITIONS else None

        split = await wait_until(shared, "8 partitions split over both workers", 60)

        async def kill_mid_stream() -> float:
            await asyncio.sleep(_KILL_AFTER_S)
            consumed = await asyncio.to_thread(_fills_consumed, first)
            await asyncio.to_thread(first.kill)  # SIGKILL: no commit, no leaving the group
            return consumed

        collected, consumed_by_victim = await asyncio.gather(
            publish_and_collect(dep.settings, lines, rate=_RATE, timeout_s=100), kill_mid_stream()
        )
        assert first.process is not None and first.process.returncode == -9
        assert 0 < consumed_by_victim < _FILLS, "the victim was not working when killed"
        # The group only commits every fill once the survivor owns every partition.
        taken_over = await wait_until(
            lambda: _assigned(second) == _PARTITIONS, "survivor owns all 8 partitions", 30
        )
        assert taken_over
        everything = await read_topic(dep.settings, dep.settings.topic_credits)

    assert sorted(collected.credits) == sorted(expected)  # nothing lost, nothing extra
    payloads: dict[str, set[bytes]] = collections.defaultdict(set)
    copies = collections.Counter()
    for raw in everything:
        credit_id = orjson.loads(raw)["credit_id"]
        payloads[credit_id].add(raw)
        copies[credit_id] += 1
    differing = {cid: p for cid, p in payloads.items() if len(p) > 1}
    assert not differing, f"credit ids published with different payloads: {list(differing)[:5]}"
    assert set(payloads) == {orjson.loads(c)["credit_id"] for c in expected}
    republished = sum(n - 1 for n in copies.values())
    assert republished == collected.redelivered
    print(
        f"split {split}; victim had consumed {consumed_by_victim:.0f} fills; "
        f"{len(expected)} credits, {republished} re-published copies (same payload)"
    )

"""The Redis path (FillProcessor + Lua) gives exactly the offline ledger's credits, once."""

from __future__ import annotations

import glob
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from agents.fills import FillProcessor
from agents.messages import Record
from agents.metrics import Metrics
from agents.storage.store import RedisStore
from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import load_seed
from tests.factories import TOPICS, fill_line, lots

REAL = sorted(glob.glob("sample/fills/*.fills.jsonl"))


def _real_lines() -> list[bytes]:
    return [line for path in REAL for line in Path(path).read_bytes().splitlines()]


def _records(lines: list[bytes]) -> list[Record]:
    return [Record(line, "fills.v1", 0, i, 1_700_000_000_000) for i, line in enumerate(lines)]


def _offline(lines: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    ledger = Ledger.from_seed(load_seed("sample/seed.yaml"))
    replay_lines([("x", i, line) for i, line in enumerate(lines)], ledger, out.append)
    return [o.rstrip(b"\n") for o in out]


async def _run(processor: FillProcessor, lines: list[bytes], batch: int) -> list[bytes]:
    credits: list[bytes] = []
    records = _records(lines)
    for start in range(0, len(records), batch):
        result = await processor.process(records[start : start + batch])
        credits += [o.value for o in result.outgoing if o.topic == "credits.v1"]
    return credits


async def test_real_histories_through_redis_match_the_offline_replay(redis: Redis) -> None:
    lines = _real_lines()
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    processor = FillProcessor(store, Metrics(), TOPICS)
    credits = await _run(processor, lines, batch=250)
    assert credits == _offline(lines)


async def test_redelivered_batch_republishes_the_same_credits_and_changes_nothing(
    redis: Redis,
) -> None:
    lines = [fill_line(deal=d, volume=lots(1), commission="-6.00", login=900001) for d in range(40)]
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    first = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=16)
    state = await store.account(900001)
    # A restarted worker (cold cache) gets the same records again after a crash.
    again = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=7)
    assert first, "nothing was credited: the comparison below would pass on empty"
    assert again == first
    assert await store.account(900001) == state
    assert len({orjson.loads(c)["credit_id"] for c in first}) == len(first)


async def test_stale_cache_is_caught_by_compare_and_set(redis: Redis) -> None:
    # Two processors on the same logins (a rebalance moved the partition): the second one's
    # cached wallet state is stale, the Lua check catches it and it recomputes.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    a, b = FillProcessor(store, Metrics(), TOPICS), FillProcessor(store, Metrics(), TOPICS)
    line = lambda d: fill_line(deal=d, login=900001, commission="-8.00")  # noqa: E731
    await _run(a, [line(1)], 1)
    await _run(b, [line(2)], 1)  # b caches the account after deal 2
    await _run(a, [line(3)], 1)  # a's cache predates deal 2: conflict, reload, recompute
    await _run(b, [line(4)], 1)  # b's cache predates deal 3: same
    version, state = await store.account(900001)
    ledger = Ledger.from_seed(load_seed("sample/seed.yaml"))
    for d in (1, 2, 3, 4):
        ledger.process(decode_fill(line(d)))
    assert state == ledger.account(900001)  # coverage drawn exactly as in one sequence
    assert version == 5  # seed + four applied revisions


async def test_a_redelivery_publishes_the_stored_credits_not_a_recomputation(
    redis: Redis,
) -> None:
    # 900001 has 5.00 JM allocated on 2024-08-01. Three fills opened after it, each costing
    # $6 (coverage wants 3.00): the first is covered 3.00, the second 2.00, the third nothing.
    # Re-delivered after a crash, the first fill recomputes to no coverage (balance now 0):
    # the worker must publish what was emitted then (3.00), byte for byte.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    times = {"open_time": "2024-09-01T10:00:00Z", "close_time": "2024-09-01T10:30:00Z"}
    lines = [fill_line(deal=d, login=900001, commission="-6.00", **times) for d in (1, 2, 3)]
    first = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=3)
    again = await _run(FillProcessor(store, Metrics(), TOPICS), lines[:1], batch=1)
    covered = [orjson.loads(c) for c in first if orjson.loads(c)["kind"] == "jm_coverage"]
    assert [c["amount"] for c in covered] == ["3.00", "2.00"]
    assert again == [c for c in first if orjson.loads(c)["fill"]["deal"] == 1]


async def test_a_redelivery_publishes_the_stored_bytes_even_after_an_upgrade(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The credits a fill emitted are part of the journal; a worker of a newer engine version
    # that gets the fill again publishes them as they were, old engine_version included.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    lines = [fill_line(deal=1, login=900001, volume=lots(1), commission="-6.00")]
    first = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=1)
    monkeypatch.setattr("agents.storage.codec.__version__", "99.0.0")
    again = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=1)
    assert first, "nothing was credited: the comparison below would pass on empty"
    assert again == first
    assert {orjson.loads(c)["engine_version"] for c in again} != {"99.0.0"}

"""SPEC 6 hourly IB settlement: once per IB and closed hour, late credits as adjustments."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

import schemas
from agents.fills import FillProcessor
from agents.messages import Outgoing, Record
from agents.metrics import Metrics
from agents.settlement import HourlySettlement
from agents.storage import keys
from agents.storage.store import RedisStore
from engine.seed import parse_seed
from engine.settlement import settlement_id
from tests.factories import TOPICS, fill_line, lots

# IB-1 earns 10 USD/lot and passes 20% to its client: an 8.00 ib_commission per lot.
# IB-M, one level up, earns an ib_override of 10% of the L1 gross: 1.00 per lot.
SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: flat
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}
    upline_override_pct: ["10"]
ibs:
  - {id: IB-M, plan: flat, rebate_pct: "0"}
  - {id: IB-1, plan: flat, parent: IB-M, rebate_pct: "20"}
clients:
  - {id: C-1, ib: IB-1, verified: true}
accounts:
  - {login: 1001, client: C-1, type: standard}
"""
GRACE_S = 60.0
HOUR = "2024-03-01T10:00:00Z"
CLOSED = datetime(2024, 3, 1, 11, 1, tzinfo=UTC)  # 10:00 hour end + 60 s grace


def fill(deal: int, close: str = "10:10", n_lots: int = 1, **extra: Any) -> bytes:
    """A 1-lot fill of account 1001 opened at 10:00 and closed at `close` on 2024-03-01."""
    return fill_line(
        deal=deal,
        position=deal,
        login=1001,
        volume=lots(n_lots),
        close_time=f"2024-03-01T{close}:00Z",
        **extra,
    )


async def settle_fills(store: RedisStore, *lines: bytes) -> None:
    processor = FillProcessor(store, Metrics(), TOPICS)
    await processor.process([Record(line, "fills.v1", 0, i, None) for i, line in enumerate(lines)])


def decoded(out: list[Outgoing]) -> list[dict[str, Any]]:
    events = [orjson.loads(o.value) for o in out]
    for event in events:
        schemas.validate("settlement.v1", event)
    return events


def summary(out: list[Outgoing]) -> list[tuple[str, str, str, int]]:
    return [(e["event"], e["ib"], e["amount"], e["count"]) for e in decoded(out)]


async def seeded(redis: Redis) -> RedisStore:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(SEED, "settle-seed.yaml"))
    return store


async def test_a_closed_hour_gives_one_settlement_per_ib_with_its_sum_and_count(
    redis: Redis,
) -> None:
    store, metrics = await seeded(redis), Metrics()
    # 10:00 hour: 1 + 2 + 1 lots -> IB-1 4 x 8.00 = 32.00 over 3 credits, IB-M 4 x 1.00 = 4.00.
    await settle_fills(store, fill(1, "10:10"), fill(2, "10:20", 2), fill(3, "10:59"))
    settlement = HourlySettlement(store, metrics, "settlements", GRACE_S)
    out = await settlement.flush(CLOSED)
    assert summary(out) == [
        ("ib_settlement", "IB-1", "32.00", 3),
        ("ib_settlement", "IB-M", "4.00", 3),
    ]
    first = decoded(out)[0]
    assert first["hour"] == HOUR and first["currency"] == "USD"
    assert first["settlement_id"] == settlement_id("IB-1", HOUR, 0)
    assert [(o.topic, o.key) for o in out] == [
        ("settlements", b"IB-1"),
        ("settlements", b"IB-M"),
    ]
    await settlement.confirm(out)
    assert await settlement.flush(CLOSED + timedelta(hours=5)) == []  # never twice
    assert (
        metrics.registry.get_sample_value("rebate_settlements_total", {"type": "ib_settlement"})
        == 2
    )


async def test_an_open_hour_is_not_settled(redis: Redis) -> None:
    store = await seeded(redis)
    await settle_fills(store, fill(1, "10:10"), fill(2, "11:05"))
    settlement = HourlySettlement(store, Metrics(), "settlements", GRACE_S)
    assert await settlement.flush(CLOSED - timedelta(seconds=1)) == []  # still in its grace
    out = await settlement.flush(CLOSED)  # 10:00 closes; 11:00 is still open
    assert {e["hour"] for e in decoded(out)} == {HOUR}
    await settlement.confirm(out)
    assert await redis.zrange(keys.SETTLE_DIRTY, 0, -1) == [b"2024-03-01T11:00:00Z"]


async def test_a_late_credit_gives_one_adjustment_and_nothing_else(redis: Redis) -> None:
    store = await seeded(redis)
    await settle_fills(store, fill(1, "10:10"))
    settlement = HourlySettlement(store, Metrics(), "settlements", GRACE_S)
    await settlement.confirm(await settlement.flush(CLOSED))
    # A fill that closed at 10:40 reaches the engine at 11:30, after the hour was settled.
    await settle_fills(store, fill(2, "10:40", 3))
    out = await settlement.flush(CLOSED + timedelta(minutes=30))
    assert summary(out) == [
        ("ib_settlement_adjustment", "IB-1", "24.00", 1),
        ("ib_settlement_adjustment", "IB-M", "3.00", 1),
    ]
    adjustment = decoded(out)[0]
    assert adjustment["sequence"] == 1
    assert adjustment["adjusts"] == settlement_id("IB-1", HOUR, 0)
    assert adjustment["settlement_id"] == settlement_id("IB-1", HOUR, 1)
    await settlement.confirm(out)
    assert await settlement.flush(CLOSED + timedelta(hours=1)) == []


async def test_a_late_reversal_is_a_negative_adjustment(redis: Redis) -> None:
    store = await seeded(redis)
    await settle_fills(store, fill(1, "10:10"), fill(2, "10:20"))
    settlement = HourlySettlement(store, Metrics(), "settlements", GRACE_S)
    await settlement.confirm(await settlement.flush(CLOSED))
    await settle_fills(store, fill(2, "10:20", event="delete"))  # deal 2 deleted on the server
    out = await settlement.flush(CLOSED + timedelta(minutes=5))
    assert summary(out) == [
        ("ib_settlement_adjustment", "IB-1", "-8.00", -1),
        ("ib_settlement_adjustment", "IB-M", "-1.00", -1),
    ]


async def test_two_workers_flushing_at_once_emit_each_settlement_once(redis: Redis) -> None:
    store = await seeded(redis)
    await settle_fills(store, fill(1, "10:10"), fill(2, "10:30"))
    a = HourlySettlement(RedisStore(redis), Metrics(), "settlements", GRACE_S)
    b = HourlySettlement(RedisStore(redis), Metrics(), "settlements", GRACE_S)
    out_a, out_b = await asyncio.gather(a.flush(CLOSED), b.flush(CLOSED))
    assert sorted(summary(out_a + out_b)) == [
        ("ib_settlement", "IB-1", "16.00", 2),
        ("ib_settlement", "IB-M", "2.00", 2),
    ]


async def test_settlements_not_confirmed_are_published_again_after_the_lease(
    redis: Redis,
) -> None:
    store = await seeded(redis)
    await settle_fills(store, fill(1, "10:10"))
    dying = HourlySettlement(store, Metrics(), "settlements", GRACE_S, lease_s=120)
    lost = await dying.flush(CLOSED)  # the worker dies before the broker acknowledges
    # One fill: one event for its IB and one for the IB's upline (see the test above).
    assert sorted(o.key for o in lost) == [b"IB-1", b"IB-M"]
    other = HourlySettlement(store, Metrics(), "settlements", GRACE_S, lease_s=120)
    assert await other.flush(CLOSED + timedelta(seconds=119)) == []  # still leased
    again = await other.flush(CLOSED + timedelta(seconds=120))
    assert [o.value for o in again] == [o.value for o in lost]  # same events, same ids
    await other.confirm(again)
    assert await redis.zcard(keys.SETTLE_OUTBOX) == 0
    assert await other.flush(CLOSED + timedelta(hours=1)) == []


async def test_an_ib_hour_that_nets_to_zero_before_it_closes_is_not_reported(
    redis: Redis,
) -> None:
    store = await seeded(redis)
    await settle_fills(store, fill(1, "10:10"), fill(1, "10:10", event="delete"))
    settlement = HourlySettlement(store, Metrics(), "settlements", GRACE_S)
    assert await settlement.flush(CLOSED) == []
    assert await redis.zcard(keys.SETTLE_DIRTY) == 0

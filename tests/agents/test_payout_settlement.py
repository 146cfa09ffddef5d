"""SPEC 6 [r2] live: settlement per IB payout period after its hold, and the tier bonus.

The FillProcessor and the settlement timer against a real Redis, with `now` given: a daily IB
with a 24 h hold is settled once its day plus the hold (plus the grace) has passed, a
reversal inside the hold nets out, a late credit after the payout is adjustment 1; a monthly
IB's tier bonus equals a hand computation and the offline fold (engine/payouts.py).
"""

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
from agents.settlement import PeriodSettlement
from agents.storage import keys
from agents.storage.store import RedisStore
from engine import __version__
from engine.payouts import parse_period, payouts_due, settlement_id, tier_bonus_id
from engine.seed import parse_seed
from tests.factories import TOPICS
from tests.payout_factories import LIVE_MARCH as MARCH_FILLS
from tests.payout_factories import LIVE_SEED as SEED
from tests.payout_factories import fill_of

GRACE_S = 60.0
DAY = parse_period("2024-03-04")
# 2024-03-04 ends 2024-03-05T00:00; + 24 h hold = 2024-03-06T00:00; + 60 s grace.
PAYABLE = datetime(2024, 3, 6, 0, 1, tzinfo=UTC)
MARCH = parse_period("2024-03")
MARCH_PAYABLE = datetime(2024, 4, 1, 0, 1, tzinfo=UTC)  # no hold: end + 60 s grace


class Live:
    """One worker's fill path and settlement timer over the test's Redis."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.processor = FillProcessor(store, Metrics(), TOPICS)
        self.settlement = PeriodSettlement(
            store, Metrics(), "settlements", GRACE_S, credits_topic=TOPICS.credits
        )
        self.credits: list[dict[str, Any]] = []
        self._offset = 0

    async def fills(self, *lines: bytes) -> None:
        records = [
            Record(line, "fills.v1", 0, self._offset + i, None) for i, line in enumerate(lines)
        ]
        self._offset += len(lines)
        result = await self.processor.process(records)
        self.credits += [orjson.loads(o.value) for o in result.credits]

    async def flush(self, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(settlement events, tier_bonus credits) published at `now`, then confirmed."""
        out = await self.settlement.flush(now)
        await self.settlement.confirm(out)
        return _split(out)


def _split(out: list[Outgoing]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = [orjson.loads(o.value) for o in out if o.topic == "settlements"]
    bonuses = [orjson.loads(o.value) for o in out if o.topic == TOPICS.credits]
    for event in events:
        schemas.validate("settlement.v1", event)
    for credit in bonuses:
        schemas.validate("credit.v1", credit)
    assert len(events) + len(bonuses) == len(out)
    return events, bonuses


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str, str, int]]:
    return [
        (e["event"], e["ib"], e.get("period", e["hour"]), e["amount"], e["count"]) for e in events
    ]


async def live(redis: Redis) -> Live:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(SEED, "payout-seed.yaml"))
    return Live(store)


async def test_a_daily_ib_is_settled_once_after_its_day_and_hold(redis: Redis) -> None:
    worker = await live(redis)
    # 1 lot at 10:10 and 2 lots at 23:50: 3 x 8.00 = 24.00 over 2 credits, both on 2024-03-04.
    await worker.fills(fill_of(1, 1, "1", "2024-03-04T10:10:00Z"))
    await worker.fills(fill_of(2, 1, "2", "2024-03-04T23:50:00Z"))
    assert await worker.flush(datetime(2024, 3, 5, 0, 1, tzinfo=UTC)) == ([], [])  # day over
    assert await worker.flush(PAYABLE - timedelta(seconds=1)) == ([], [])  # hold + grace not
    events, bonuses = await worker.flush(PAYABLE)
    assert bonuses == []
    assert events == [
        {
            "schema": "settlement.v1",
            "event": "ib_settlement",
            "settlement_id": settlement_id("IB-D", DAY, 0),
            "ib": "IB-D",
            "hour": "2024-03-04T00:00:00Z",
            "period": "2024-03-04",
            "payout": "daily",
            "amount": "24.00",
            "count": 2,
            "currency": "USD",
            "engine_version": __version__,
        }
    ]
    assert await worker.flush(PAYABLE + timedelta(days=3)) == ([], [])  # never twice


async def test_a_reversal_inside_the_hold_nets_out(redis: Redis) -> None:
    worker = await live(redis)
    await worker.fills(fill_of(1, 1, "1", "2024-03-04T10:10:00Z"))
    await worker.fills(fill_of(2, 1, "2", "2024-03-04T11:10:00Z"))
    # Deal 2 is deleted on the 5th, inside the hold: 8.00 + 16.00 - 16.00 = 8.00, 1 + 1 - 1 = 1.
    await worker.fills(fill_of(2, 1, "2", "2024-03-04T11:10:00Z", event="delete"))
    events, _ = await worker.flush(PAYABLE)
    assert summary(events) == [("ib_settlement", "IB-D", "2024-03-04", "8.00", 1)]
    assert await worker.flush(PAYABLE + timedelta(hours=1)) == ([], [])  # no adjustment


async def test_a_late_credit_after_the_payout_is_adjustment_1(redis: Redis) -> None:
    worker = await live(redis)
    await worker.fills(fill_of(1, 1, "1", "2024-03-04T10:10:00Z"))
    events, _ = await worker.flush(PAYABLE)
    assert summary(events) == [("ib_settlement", "IB-D", "2024-03-04", "8.00", 1)]
    # A fill that closed at 15:00 on the 4th reaches the engine on the 6th: 3 x 8.00 = 24.00.
    await worker.fills(fill_of(3, 1, "3", "2024-03-04T15:00:00Z"))
    events, _ = await worker.flush(PAYABLE + timedelta(minutes=5))
    assert summary(events) == [("ib_settlement_adjustment", "IB-D", "2024-03-04", "24.00", 1)]
    (adjustment,) = events
    assert adjustment["sequence"] == 1 and adjustment["payout"] == "daily"
    assert adjustment["settlement_id"] == settlement_id("IB-D", DAY, 1)
    assert adjustment["adjusts"] == settlement_id("IB-D", DAY, 0)


async def test_a_monthly_tier_bonus_is_paid_when_the_month_is_payable(redis: Redis) -> None:
    worker = await live(redis)
    await worker.fills(*MARCH_FILLS[:4])
    await worker.fills(*MARCH_FILLS[4:])
    assert await worker.flush(MARCH_PAYABLE - timedelta(seconds=1)) == ([], [])
    events, bonuses = await worker.flush(MARCH_PAYABLE)
    # IB-T's commission: (60 + 20 + 15) lots x 10.00 = 950.00 over 3 credits; C-R's 100% rebate
    # leaves no ib_commission, deal 16's 400.00 and its reversal net out (count 1 - 1).
    assert summary(events) == [("ib_settlement", "IB-T", "2024-03", "950.00", 3)]
    (bonus,) = bonuses
    assert bonus["credit_id"] == tier_bonus_id("IB-T", "2024-03", 0)
    assert bonus["beneficiary"] == {"type": "ib", "id": "IB-T"}
    assert bonus["amount"] == "125.00"
    basis = bonus["basis"]
    assert (basis["period"], basis["payout"], basis["std_lots"]) == ("2024-03", "monthly", "125")
    assert basis["tier_reached"] == {"from_std_lots": "100", "per_lot_bonus_usd": "1"}
    assert basis["period_start"] == "2024-03-01T00:00:00Z"
    assert basis["period_end"] == "2024-04-01T00:00:00Z"
    # The offline fold over the same credits pays the same credit, byte for byte.
    offline = payouts_due(worker.credits, worker.store.book, engine_version=__version__)
    march = [c for c in offline.tier_bonuses if c["basis"]["period"] == "2024-03"]
    assert [orjson.dumps(c) for c in march] == [orjson.dumps(bonus)]
    assert await worker.flush(MARCH_PAYABLE + timedelta(days=1)) == ([], [])


async def test_a_late_fill_moves_the_tier_bonus_by_a_numbered_adjustment(redis: Redis) -> None:
    worker = await live(redis)
    await worker.fills(*MARCH_FILLS)
    _, (bonus,) = await worker.flush(MARCH_PAYABLE)
    # 400 more March lots arrive in April: 525 reaches the 500 tier, 525 x 2.00 = 1050.00,
    # 1050.00 - 125.00 paid = 925.00.
    await worker.fills(fill_of(17, 2, "400", "2024-03-20T10:10:00Z"))
    events, (adjustment,) = await worker.flush(MARCH_PAYABLE + timedelta(days=2))
    assert summary(events) == [("ib_settlement_adjustment", "IB-T", "2024-03", "4000.00", 1)]
    assert adjustment["credit_id"] == tier_bonus_id("IB-T", "2024-03", 1)
    assert adjustment["amount"] == "925.00"
    assert adjustment["basis"]["adjusts"] == bonus["credit_id"]
    assert adjustment["basis"]["paid_before"] == "125.00"
    assert adjustment["basis"]["bonus"] == "1050.00"


async def test_lots_that_move_while_the_bonus_is_computed_keep_the_month_open(
    redis: Redis,
) -> None:
    worker = await live(redis)
    await worker.fills(*MARCH_FILLS[:4])
    cutoff = MARCH_PAYABLE.timestamp() - GRACE_S
    slots = await worker.store.payable_slots(cutoff, 10)
    # 125 std lots as read; the bonus the timer would compute for them: 125.00.
    assert slots["2024-03+0h"] == {"IB-T": str(125 * 10**10)}
    await worker.fills(fill_of(17, 2, "400", "2024-03-20T10:10:00Z"))  # lands in between
    now = MARCH_PAYABLE.timestamp()
    claimed = await worker.store.claim_settlements(
        list(slots), [("2024-03+0h", "IB-T", str(125 * 10**10), 12500)], cutoff, now, now + 60, 10
    )
    assert [orjson.loads(r)[0] for r in claimed] == ["IB-T"]  # the settlement, no bonus
    assert await redis.zscore(keys.SETTLE_DIRTY, "2024-03+0h") is not None
    await worker.store.confirm_settlements(claimed)
    _, (bonus,) = await worker.flush(MARCH_PAYABLE + timedelta(seconds=1))
    assert bonus["amount"] == "1050.00"  # 525 x 2.00, paid once as sequence 0


async def test_two_workers_pay_a_tier_bonus_once_and_a_dying_one_loses_nothing(
    redis: Redis,
) -> None:
    worker = await live(redis)
    await worker.fills(*MARCH_FILLS[:4])
    a = PeriodSettlement(
        RedisStore(redis), Metrics(), "settlements", GRACE_S, credits_topic=TOPICS.credits
    )
    b = PeriodSettlement(
        RedisStore(redis), Metrics(), "settlements", GRACE_S, credits_topic=TOPICS.credits
    )
    out_a, out_b = await asyncio.gather(a.flush(MARCH_PAYABLE), b.flush(MARCH_PAYABLE))
    lost = out_a + out_b  # neither confirms: both die before the broker acknowledges
    assert sorted(o.topic for o in lost) == [TOPICS.credits, "settlements"]
    later = MARCH_PAYABLE + timedelta(seconds=120)  # the lease is over
    again = await worker.settlement.flush(later)
    assert sorted(o.value for o in again) == sorted(o.value for o in lost)  # same ids
    await worker.settlement.confirm(again)
    assert await redis.zcard(keys.SETTLE_OUTBOX) == 0

"""IB settlement per payout period (SPEC 6): one event per IB and payable period, adjustments
later, and the period's tier bonus.

The fills script (agents/storage/apply.lua) adds every IB commission/override credit (and
reversal) to the totals of its IB payout slot (the IB's period with its hold, engine/settlement.py),
a tiered IB's direct earning fills to the slot's lots, and marks the slot dirty, scored by when
it becomes payable (period end + hold). `PeriodSettlement.flush(now)` settles each dirty slot
whose payable time + grace has passed with agents/storage/settle.lua, which, in one call,
compares the totals with what was already reported, records the difference as reported, puts
the resulting records into an outbox and takes the slot off the dirty set. So:

* a period is settled once even when several workers flush at the same time;
* the first report of an IB period is an `ib_settlement` (its sum and count); credits that
  arrive after it make the slot dirty again and are reported as `ib_settlement_adjustment`s
  (the difference, numbered 1, 2, ...), never lost and never counted twice; reversals inside
  the hold net out before the first report;
* a tiered IB's period pays one `tier_bonus` credit (credits topic) once payable, then numbered
  adjustments when late fills or reversals move the bonus: the same ids and basis as the
  offline fold (engine/payouts.py). The bonus of the lots read is computed here (the tier
  table is engine code); the script applies it only if the lots did not move meanwhile;
* the outbox makes publishing at-least-once: `flush` leases what it returns, `confirm` removes
  it once the broker acknowledged; records of a worker that died in between are returned again
  after the lease, with the same ids.

`count` is the net number of credits (a reversal counts -1); an adjustment's count is the change
of that number and may be negative. An IB period whose credits net to zero before it is first
settled is not reported. An hourly IB without hold gets exactly the hourly settlement's events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

import schemas
from agents.messages import Outgoing
from agents.metrics import Metrics
from agents.storage.store import RedisStore
from engine import __version__
from engine.money import cents
from engine.payouts import Reported, period_terms, settlement_event, tier_bonus, tier_bonus_after
from engine.settlement import parse_slot, units_lots

__all__ = ["HourlySettlement", "PeriodSettlement"]

log = logging.getLogger("rebate.settlement")


class PeriodSettlement:
    def __init__(
        self,
        store: RedisStore,
        metrics: Metrics,
        topic: str,
        grace_s: float = 60.0,
        *,
        credits_topic: str = "credits.v1",
        lease_s: float = 120.0,
        max_hours: int = 100,
        max_records: int = 1000,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.topic = topic
        self.credits_topic = credits_topic
        self.grace_s = grace_s
        self.lease_s = lease_s
        self.max_slots = max_hours
        self.max_records = max_records
        self._claimed: dict[bytes, bytes] = {}  # published value -> outbox record

    async def flush(self, now: datetime) -> list[Outgoing]:
        """Settle the periods payable at `now`; return every event and credit due to publish.

        Publish them, then call `confirm` with them; unconfirmed ones come back after the lease.
        """
        now_s = now.timestamp()
        cutoff_s = now_s - self.grace_s
        slots = await self.store.payable_slots(cutoff_s, self.max_slots)
        bonuses: list[tuple[str, str, str, int]] = []
        if any(slots.values()):
            await self.store.refresh_rules()  # the tier tables of the periods' terms
            for slot, per_ib in slots.items():
                period, _ = parse_slot(slot)
                for ib, units in per_ib.items():
                    tiers = period_terms(self.store.book, ib, period).tiers
                    bonus = tier_bonus(tiers, units_lots(int(units)))
                    bonuses.append((slot, ib, units, cents(bonus)))
        claimed = await self.store.claim_settlements(
            list(slots), bonuses, cutoff_s, now_s, now_s + self.lease_s, self.max_records
        )
        records = [(orjson.loads(raw), raw) for raw in claimed]
        # Period start, IB, sequence; settlements before tier bonuses.
        records.sort(key=lambda r: (parse_slot(r[0][1])[0].start, len(r[0]), r[0][0], int(r[0][2])))
        out: list[Outgoing] = []
        void: list[bytes] = []
        for record, raw in records:
            outgoing = self._tier_bonus(record) if len(record) == 7 else self._settlement(record)
            if outgoing is None:
                void.append(raw)
            else:
                self._claimed[outgoing.value] = raw
                out.append(outgoing)
        await self.store.confirm_settlements(void)
        return out

    def _settlement(self, record: list[str]) -> Outgoing:
        ib, slot, seq, amount, count = record
        period, _ = parse_slot(slot)
        report = Reported(int(seq), Decimal(int(amount)).scaleb(-2), int(count))
        event = settlement_event(ib, period, report, engine_version=__version__)
        if errors := list(schemas.iter_errors("settlement.v1", event)):
            # Published anyway: dropping it would lose money; the log says what is off.
            log.error("settlement %s breaks settlement.v1: %s", event, errors[0].message)
        self.metrics.settlements.labels(event["event"]).inc()
        return Outgoing(self.topic, ib.encode(), orjson.dumps(event))

    def _tier_bonus(self, record: list[str]) -> Outgoing | None:
        ib, slot, seq, _, paid_before, units, _ = record
        period, _ = parse_slot(slot)
        tiers = period_terms(self.store.book, ib, period).tiers
        credit: dict[str, Any] | None = tier_bonus_after(
            ib,
            period,
            tiers,
            units_lots(int(units)),
            Decimal(int(paid_before)).scaleb(-2),
            int(seq),
            engine_version=__version__,
        )
        if credit is None:
            # Only when the tier table changed between this worker taking the bonus and
            # publishing it (a record of a worker that died): the emitted state already says
            # so, and the next late fill of the period adjusts from it.
            log.error("tier bonus record %s no longer gives a credit; not published", record)
            return None
        if errors := list(schemas.iter_errors("credit.v1", credit)):
            log.error("tier bonus %s breaks credit.v1: %s", credit, errors[0].message)
        self.metrics.credits.labels("tier_bonus").inc()
        return Outgoing(self.credits_topic, ib.encode(), orjson.dumps(credit))

    async def confirm(self, outgoing: Sequence[Outgoing]) -> None:
        """The broker acknowledged these: take them out of the outbox for good."""
        records = [r for o in outgoing if (r := self._claimed.pop(o.value, None)) is not None]
        await self.store.confirm_settlements(records)


HourlySettlement = PeriodSettlement
"""The hourly settlement's old name: an hourly IB without hold is one case of the periods."""

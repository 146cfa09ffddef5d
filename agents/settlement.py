"""Hourly IB settlement (SPEC 6): one event per IB and closed clock hour, adjustments later.

The fills script (agents/storage/apply.lua) adds every IB commission/override credit (and
reversal) to the totals of its close_time hour and marks the hour dirty.
`HourlySettlement.flush(now)` settles each dirty hour whose end + grace has passed with
agents/storage/settle.lua, which, in one call,
compares the totals with what was already reported, records the difference as reported, puts
the resulting records into an outbox and takes the hour off the dirty set. So:

* an hour is settled once even when several workers flush at the same time;
* the first report of an IB-hour is an `ib_settlement` (its sum and count); credits that arrive
  after it make the hour dirty again and are reported as `ib_settlement_adjustment`s (the
  difference, numbered 1, 2, ...), never lost and never counted twice;
* the outbox makes publishing at-least-once: `flush` leases what it returns, `confirm` removes
  it once the broker acknowledged; records of a worker that died in between are returned again
  after the lease, with the same settlement ids.

`count` is the net number of credits (a reversal counts -1); an adjustment's count is the change
of that number and may be negative. An IB-hour whose credits net to zero before it is first
settled is not reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import orjson

import schemas
from agents.messages import Outgoing
from agents.metrics import Metrics
from agents.storage.store import RedisStore
from engine import __version__
from engine.settlement import settlement_event

__all__ = ["HourlySettlement"]

log = logging.getLogger("rebate.settlement")

_HOUR_S = 3600


class HourlySettlement:
    def __init__(
        self,
        store: RedisStore,
        metrics: Metrics,
        topic: str,
        grace_s: float = 60.0,
        *,
        lease_s: float = 120.0,
        max_hours: int = 100,
        max_records: int = 1000,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.topic = topic
        self.grace_s = grace_s
        self.lease_s = lease_s
        self.max_hours = max_hours
        self.max_records = max_records
        self._claimed: dict[bytes, bytes] = {}  # published value -> outbox record

    async def flush(self, now: datetime) -> list[Outgoing]:
        """Settle the hours closed at `now` and return every settlement event due to publish.

        Publish them, then call `confirm` with them; unconfirmed ones come back after the lease.
        """
        now_s = now.timestamp()
        claimed = await self.store.claim_settlements(
            now_s - _HOUR_S - self.grace_s,
            now_s,
            now_s + self.lease_s,
            self.max_hours,
            self.max_records,
        )
        records = [(orjson.loads(raw), raw) for raw in claimed]
        records.sort(key=lambda r: (r[0][1], r[0][0], int(r[0][2])))  # hour, IB, sequence
        out: list[Outgoing] = []
        for (ib, hour, seq, amount, count), raw in records:
            event = settlement_event(ib, hour, int(seq), int(amount), int(count), __version__)
            if errors := list(schemas.iter_errors("settlement.v1", event)):
                # Published anyway: dropping it would lose money; the log says what is off.
                log.error("settlement %s breaks settlement.v1: %s", event, errors[0].message)
            value = orjson.dumps(event)
            self._claimed[value] = raw
            out.append(Outgoing(self.topic, ib.encode(), value))
            self.metrics.settlements.labels(event["event"]).inc()
        return out

    async def confirm(self, outgoing: Sequence[Outgoing]) -> None:
        """The broker acknowledged these events: take them out of the outbox for good."""
        records = [r for o in outgoing if (r := self._claimed.pop(o.value, None)) is not None]
        await self.store.confirm_settlements(records)

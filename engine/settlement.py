"""SPEC 6 hourly IB settlement: which credits count, the hour each belongs to, the events.

IB commission and override credits (and their reversals) add to the settlement totals of
their IB and close_time clock hour. A reversal counts in the hour of the credit it reverses,
never in the hour the update arrived, so an update that moves a deal's close time never
shifts money between hours already settled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from engine.credits import Credit

__all__ = [
    "SETTLED_KINDS",
    "HourIncrement",
    "hour_of",
    "settlement_event",
    "settlement_id",
    "settlement_increments",
]

SETTLED_KINDS = frozenset({"ib_commission", "ib_override"})


class HourIncrement(NamedTuple):
    """What one credit adds to an IB's totals of one clock hour."""

    ib: str
    amount: Decimal  # signed: a reversal's amount is negative
    delta: int  # +1 for a credit, -1 for its reversal (the count of credits in the hour)
    hour: str  # "2024-06-03T10:00:00Z"
    epoch: int  # the hour's start, epoch seconds


@lru_cache(maxsize=4096)
def hour_of(close_time: str) -> tuple[str, int]:
    """(hour label, epoch seconds) of a close_time: fills arrive hour by hour, so cached."""
    hour = datetime.fromisoformat(close_time).replace(minute=0, second=0, microsecond=0)
    return hour.strftime("%Y-%m-%dT%H:00:00Z"), int(hour.astimezone(UTC).timestamp())


def settlement_increments(credits: Iterable[Credit]) -> tuple[HourIncrement, ...]:
    """The settlement increments of a fill revision's credits, in credit order."""
    out = []
    for c in credits:
        reversal = c.kind == "reversal"
        kind = c.basis.get("reversed_kind", c.kind) if reversal else c.kind
        if kind in SETTLED_KINDS and c.beneficiary_type == "ib":
            closed = c.basis["reversed_close_time"] if reversal else c.fill["close_time"]
            hour, epoch = hour_of(closed)
            count = -1 if reversal else 1
            out.append(HourIncrement(c.beneficiary_id, c.amount, count, hour, epoch))
    return tuple(out)


def settlement_id(ib: str, hour: str, sequence: int) -> str:
    """Deterministic: sequence 0 is the IB-hour's ib_settlement, 1.. its adjustments."""
    key = f"{ib}|{hour}|{sequence}"
    return "st_" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def settlement_event(
    ib: str, hour: str, seq: int, amount_cents: int, count: int, engine_version: str
) -> dict[str, Any]:
    """The settlement.v1 event of an IB-hour's report `seq` (0: settlement, 1..: adjustments)."""
    event: dict[str, Any] = {
        "schema": "settlement.v1",
        "event": "ib_settlement" if seq == 0 else "ib_settlement_adjustment",
        "settlement_id": settlement_id(ib, hour, seq),
        "ib": ib,
        "hour": hour,
        "amount": f"{Decimal(amount_cents).scaleb(-2):.2f}",
        "count": count,
        "currency": "USD",
    }
    if seq:
        event["adjusts"] = settlement_id(ib, hour, 0)
        event["sequence"] = seq
    event["engine_version"] = engine_version
    return event

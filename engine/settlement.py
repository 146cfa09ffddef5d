"""SPEC 6 hourly IB settlement: which credits count, and the hour each one belongs to.

IB commission and override credits (and their reversals) add to the settlement totals of
their IB and close_time clock hour. A reversal counts in the hour of the credit it reverses,
never in the hour the update arrived, so an update that moves a deal's close time never
shifts money between hours already settled.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from engine.credits import Credit

__all__ = ["SETTLED_KINDS", "HourIncrement", "hour_of", "settlement_increments"]

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

"""SPEC 6 live settlement: what one fill revision adds to its IBs' payout periods.

The period arithmetic, settlement ids and events, tiers and the offline fold live in
engine/payouts.py; this module turns a revision's credits into the increments the worker
stores (agents/storage/apply.lua) and names the slots it stores them under, so the live path
and the offline `payouts_due` put every credit in the same IB period.

IB commission and override credits (and their reversals) add to the settlement totals of their
IB and payout period. A reversal counts in the period of the credit it reverses, never in the
period the update arrived in, so an update that moves a deal's close time never shifts money
between periods already settled. For an IB whose period has tiers, a revision that earned L1
commission for it adds its std_lots to the period, and the revision's reversal takes them off.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from engine.credits import Credit
from engine.payouts import (
    EARNING_KINDS,
    SETTLED_KINDS,
    Period,
    fill_std_lots,
    parse_period,
    payout_period,
    period_of,
    settlement_event,
    settlement_id,
)
from engine.rules import RuleBook
from engine.state import Standing

__all__ = [
    "LOTS_EXPONENT",
    "SETTLED_KINDS",
    "Increments",
    "LotsIncrement",
    "SettlementIncrement",
    "SlotMemo",
    "lots_units",
    "parse_slot",
    "payout_increments",
    "reversed_credits",
    "settlement_event",
    "settlement_id",
    "slot_label",
    "units_lots",
]

LOTS_EXPONENT = 10
"""std_lots are summed as integers of 10^-10 lots: exact for MT5's 0.0001 lots times any
lot_scale of up to six decimals; a Redis counter then holds 9.2e8 lots per IB and period."""


class SettlementIncrement(NamedTuple):
    """What one credit adds to an IB's settlement totals of one payout slot."""

    ib: str
    amount: Decimal  # signed: a reversal's amount is negative
    delta: int  # +1 for a credit, -1 for its reversal (the count of credits in the period)
    slot: str  # `slot_label`: the period and its hold
    payable: int  # epoch seconds: the period's end + hold


class LotsIncrement(NamedTuple):
    """What one fill revision adds to (or, reversed, takes off) an IB period's tier lots."""

    ib: str
    std_lots: Decimal  # signed
    slot: str
    payable: int


class Increments(NamedTuple):
    settlements: tuple[SettlementIncrement, ...]
    lots: tuple[LotsIncrement, ...]


def slot_label(period: Period, hold_hours: int) -> str:
    """The name of an IB period with its hold, under which the worker keeps its totals.

    An hourly period without hold is its start text (`2024-03-01T10:00:00Z`), as the hourly
    settlement always named it; any other is `<period id>+<hold>h` (`2024-03-01+24h`).
    """
    if period.kind == "hourly" and not hold_hours:
        return period.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{period.id}+{hold_hours}h"


def parse_slot(label: str) -> tuple[Period, int]:
    """(period, hold hours) of a `slot_label`."""
    period_id, plus, hold = label.partition("+")
    if not plus:
        return period_of("hourly", datetime.fromisoformat(label)), 0
    return parse_period(period_id), int(hold.removesuffix("h"))


def lots_units(std_lots: Decimal) -> int:
    """std_lots as an integer count of 10^-LOTS_EXPONENT lots (what Redis counters hold)."""
    return int(std_lots.scaleb(LOTS_EXPONENT).to_integral_value())


def units_lots(units: int) -> Decimal:
    return Decimal(units).scaleb(-LOTS_EXPONENT)


SlotMemo = dict[tuple[str, str], tuple[str, int, bool]]
"""(IB, instant text) -> (slot label, payable epoch, tiered?): fills of a batch close together."""


def payout_increments(
    credits: Iterable[Credit],
    reversed_credits: Iterable[Credit],
    book: RuleBook,
    memo: SlotMemo | None = None,
) -> Increments:
    """The increments of one fill revision: its `credits`, and the `reversed_credits` (the
    credits that stood for the deal, when the revision reverses them).

    `memo` may be shared by the revisions of a batch settled with the same `book`.
    """
    memo = {} if memo is None else memo

    def slot(ib: str, at: str) -> tuple[str, int, bool]:
        if (ib, at) not in memo:
            period, terms = payout_period(book, ib, datetime.fromisoformat(at).astimezone(UTC))
            payable = int(period.payable_at(terms.hold_hours).timestamp())
            memo[(ib, at)] = (slot_label(period, terms.hold_hours), payable, bool(terms.tiers))
        return memo[(ib, at)]

    settlements = []
    fresh: list[Credit] = []
    for c in credits:
        reversal = c.kind == "reversal"
        if not reversal:
            fresh.append(c)
        kind = c.basis.get("reversed_kind", c.kind) if reversal else c.kind
        if kind in SETTLED_KINDS and c.beneficiary_type == "ib":
            closed = c.basis["reversed_close_time"] if reversal else c.fill["close_time"]
            label, payable, _ = slot(c.beneficiary_id, closed)
            count = -1 if reversal else 1
            ib = c.beneficiary_id
            settlements.append(SettlementIncrement(ib, c.amount, count, label, payable))
    lots = []
    for revision, sign in ((list(reversed_credits), -1), (fresh, 1)):
        earned = _direct_earning(revision)
        if earned is not None:
            ib, at, std_lots = earned
            label, payable, tiered = slot(ib, at)
            if tiered:
                lots.append(LotsIncrement(ib, sign * std_lots, label, payable))
    return Increments(tuple(settlements), tuple(lots))


def _direct_earning(credits: list[Credit]) -> tuple[str, str, Decimal] | None:
    """(direct IB, close_time, std_lots) when a revision's credits show it earned L1
    commission; its IB commission and client rebate name the same fill: counted once."""
    for c in credits:
        if c.kind in EARNING_KINDS and c.level == 1:
            ib = c.basis.get("ib") if c.kind == "client_rebate" else c.beneficiary_id
            if ib is not None:
                return str(ib), str(c.fill["close_time"]), fill_std_lots(c.basis, c.fill)
    return None


def reversed_credits(credits: Iterable[Credit], standing: Standing | None) -> tuple[Credit, ...]:
    """The credits a revision takes back: all that stood for its deal, if it reverses any."""
    if standing is None or not any(c.kind == "reversal" for c in credits):
        return ()
    return standing.credits

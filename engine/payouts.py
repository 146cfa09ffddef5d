"""Payout periods, holds, adjustment numbering and volume tiers (SPEC 6 [r2]); pure, no I/O.

A payout period is the clock hour, UTC day, ISO week (Monday 00:00 UTC) or calendar month of a
credit's close_time (a reversal's: the reversed credit's, so an update that moves a deal never
shifts money between periods already paid). A period becomes payable `hold_hours` after it
ends, so reversals inside the hold net out. The first report of an IB and period is sequence 0;
anything that changes it later is a numbered adjustment (1, 2, ...) carrying the difference.

Volume tiers: the std_lots of an IB's direct clients' earning fills in a period select the
highest tier reached and one `tier_bonus` credit pays `per_lot_bonus_usd x std_lots`. The lots
are a sum over the set of fill revisions that stand (earned and not reversed), so the result
does not depend on the order in which credits arrive or partitions interleave.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from engine.money import ZERO, fmt, round_cents

if TYPE_CHECKING:  # engine/rules.py imports Tier from here: no runtime import back
    from engine.rules import Ib, RuleBook

__all__ = [
    "EARNING_KINDS",
    "PERIODS",
    "SETTLED_KINDS",
    "PayoutTerms",
    "Payouts",
    "Period",
    "Report",
    "Reported",
    "Tier",
    "credit_period_start",
    "direct_std_lots",
    "fill_std_lots",
    "next_report",
    "parse_period",
    "parse_tiers",
    "payout_period",
    "payouts_due",
    "period_of",
    "period_terms",
    "settlement_event",
    "settlement_id",
    "settlement_key",
    "std_lots_of",
    "tier_bonus",
    "tier_bonus_after",
    "tier_bonus_credit",
    "tier_bonus_id",
    "tier_reached",
]

PERIODS = ("hourly", "daily", "weekly", "monthly")
# The kinds an IB's settlement event sums (and their reversals); tier bonuses are paid apart.
SETTLED_KINDS = frozenset({"ib_commission", "ib_override"})
# The kinds that show a fill earned L1 commission for the direct IB: the IB's net may be zero
# (a 100% rebate emits no ib_commission), the client's rebate then still names the IB.
EARNING_KINDS = frozenset({"ib_commission", "client_rebate"})

_PERIOD_IDS = (
    ("hourly", re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})$")),
    ("daily", re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")),
    ("weekly", re.compile(r"^(\d{4})-W(\d{2})$")),
    ("monthly", re.compile(r"^(\d{4})-(\d{2})$")),
)
# What an id leaves out, to make (year, month, day, hour): a month's day and hour, a day's hour.
_ID_PADDING = {"hourly": (), "daily": (0,), "monthly": (1, 0)}


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """One payout period: [start, end) in UTC."""

    start: datetime
    end: datetime
    kind: str

    @property
    def id(self) -> str:
        """`2024-03-04T10` (hourly), `2024-03-04` (daily), `2024-W10` (weekly), `2024-03`."""
        if self.kind == "hourly":
            return self.start.strftime("%Y-%m-%dT%H")
        if self.kind == "daily":
            return self.start.strftime("%Y-%m-%d")
        if self.kind == "weekly":
            year, week, _ = self.start.isocalendar()
            return f"{year}-W{week:02d}"
        return self.start.strftime("%Y-%m")

    def payable_at(self, hold_hours: Decimal | int) -> datetime:
        """When the period is settled: its end plus the hold."""
        return self.end + timedelta(hours=float(hold_hours))

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def period_of(kind: str, at: datetime) -> Period:
    """The payout period of kind `kind` that holds the instant `at` (timezone-aware)."""
    at = at.astimezone(UTC)
    if kind == "hourly":
        start = at.replace(minute=0, second=0, microsecond=0)
        return Period(start, start + timedelta(hours=1), kind)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "daily":
        return Period(day, day + timedelta(days=1), kind)
    if kind == "weekly":
        start = day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        return Period(start, start + timedelta(weeks=1), kind)
    if kind == "monthly":
        start = day.replace(day=1)
        after = start.replace(year=start.year + 1, month=1) if start.month == 12 else None
        return Period(start, after or start.replace(month=start.month + 1), kind)
    raise ValueError(f"unknown payout period {kind!r} (one of {', '.join(PERIODS)})")


def parse_period(text: str) -> Period:
    """The period named by its id; the form of the id says its kind.

    Raises:
        ValueError: not one of the four id forms, or not a real date.
    """
    for kind, pattern in _PERIOD_IDS:
        if m := pattern.match(text):
            parts = [int(g) for g in m.groups()]
            if kind == "weekly":
                start = datetime.fromisocalendar(parts[0], parts[1], 1).replace(tzinfo=UTC)
            else:
                year, month, day, hour = (*parts, *_ID_PADDING[kind])
                start = datetime(year, month, day, hour, tzinfo=UTC)
            return period_of(kind, start)
    raise ValueError(
        f"bad period {text!r}: expected 2024-03-04T10, 2024-03-04, 2024-W10 or 2024-03"
    )


def credit_period_start(credit: Mapping[str, Any]) -> datetime:
    """The instant that places a credit.v1 dict in a period.

    A reversal belongs to the period of the credit it reverses; a tier bonus to its own period.
    """
    return _utc(_placing_time(credit))


def _placing_time(credit: Mapping[str, Any]) -> str:
    basis = credit["basis"]
    if credit["kind"] == "reversal":
        return str(basis["reversed_close_time"])
    if credit["kind"] == "tier_bonus":
        return str(basis["period_start"])
    return str(credit["fill"]["close_time"])


def std_lots_of(credit: Mapping[str, Any]) -> Decimal:
    """Standard-lot equivalents of a credit's fill (`fill_std_lots` of its basis and fill)."""
    return fill_std_lots(credit["basis"], credit["fill"])


def fill_std_lots(basis: Mapping[str, Any], fill: Mapping[str, Any]) -> Decimal:
    """Standard-lot equivalents of a credit's fill: lots x lot_scale (SPEC 3 [r2]).

    A credit's basis carries them among its inputs (`inputs.std_lots`, a cent account's lots
    x 0.01); a credit without them (written before lot_scale) counts the fill's lots.
    """
    inputs = basis.get("inputs") or {}
    text = inputs.get("std_lots") or basis.get("std_lots") or fill["lots"]
    return Decimal(text)


# -- settlement events and their adjustments -----------------------------------------------


def settlement_id(ib: str, period: Period | str, sequence: int) -> str:
    """Deterministic: sequence 0 is the IB-period's settlement, 1.. its adjustments.

    An hour is keyed by its start text (`2024-03-04T10:00:00Z`), as the hourly settlement
    always keyed it, so hourly settlement ids stay what they were; other periods by their id.
    A string is taken as that key already (an hour's start text).
    """
    key = period if isinstance(period, str) else settlement_key(period)
    return "st_" + _digest(f"{ib}|{key}|{sequence}")


def settlement_key(period: Period) -> str:
    """What names a period in its settlement ids: an hour's start text, else the period id."""
    return _text(period.start) if period.kind == "hourly" else period.id


@dataclass(frozen=True, slots=True)
class Report:
    """What has been reported for one IB and period, or what is to be reported next.

    For sequence 0 `amount` and `count` are the totals; for an adjustment the change since
    the previous report (either may be negative).
    """

    sequence: int
    amount: Decimal
    count: int
    total_amount: Decimal
    total_count: int


@dataclass(frozen=True, slots=True)
class Reported:
    """What one settlement event says: its sequence and the sum and count it reports."""

    sequence: int
    amount: Decimal
    count: int


def next_report(last: Report | None, amount: Decimal, count: int) -> Report | None:
    """The report due for totals `amount`/`count` after `last` (None: nothing reported yet).

    None when there is nothing to say: no change since `last`, or a period whose credits net to
    nothing before it is first reported.
    """
    if last is None:
        if not amount and not count:
            return None
        return Report(0, amount, count, amount, count)
    if amount == last.total_amount and count == last.total_count:
        return None
    return Report(
        last.sequence + 1, amount - last.total_amount, count - last.total_count, amount, count
    )


def settlement_event(
    ib: str, period: Period, report: Report | Reported, *, engine_version: str
) -> dict[str, Any]:
    """The settlement.v1 event of a report (the offline fold's or the live settlement's).

    An hourly event is exactly what the hourly settlement always emitted; any other period
    adds its id and kind, and `hour` is the period's first hour.
    """
    event: dict[str, Any] = {
        "schema": "settlement.v1",
        "event": "ib_settlement" if report.sequence == 0 else "ib_settlement_adjustment",
        "settlement_id": settlement_id(ib, period, report.sequence),
        "ib": ib,
        "hour": _text(period.start),
    }
    if period.kind != "hourly":
        event["period"] = period.id
        event["payout"] = period.kind
    event |= {"amount": f"{report.amount:.2f}", "count": report.count, "currency": "USD"}
    if report.sequence:
        event["adjusts"] = settlement_id(ib, period, 0)
        event["sequence"] = report.sequence
    event["engine_version"] = engine_version
    return event


# -- volume tiers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tier:
    """One row of a plan's tier table: from `from_std_lots` on, `per_lot_bonus_usd` a lot."""

    from_std_lots: Decimal
    per_lot_bonus_usd: Decimal

    def to_dict(self) -> dict[str, str]:
        return {
            "from_std_lots": fmt(self.from_std_lots),
            "per_lot_bonus_usd": fmt(self.per_lot_bonus_usd),
        }


def parse_tiers(rows: Iterable[Mapping[str, Any]]) -> tuple[Tier, ...]:
    """A plan's tier table from `[{from_std_lots, per_lot_bonus_usd}, ...]`.

    Raises:
        ValueError: a row without both keys, a value that is not a positive decimal, or
            thresholds that do not strictly ascend (a table a partner could misread).
    """
    tiers: list[Tier] = []
    for i, row in enumerate(rows):
        try:
            tier = Tier(Decimal(str(row["from_std_lots"])), Decimal(str(row["per_lot_bonus_usd"])))
        except (KeyError, TypeError, InvalidOperation):
            raise ValueError(
                f"tiers[{i}]: needs decimal from_std_lots and per_lot_bonus_usd, got {row!r}"
            ) from None
        if not (tier.from_std_lots.is_finite() and tier.per_lot_bonus_usd.is_finite()):
            raise ValueError(f"tiers[{i}]: not a number: {row!r}")
        if tier.from_std_lots <= 0 or tier.per_lot_bonus_usd <= 0:
            raise ValueError(f"tiers[{i}]: from_std_lots and per_lot_bonus_usd must be positive")
        if tiers and tier.from_std_lots <= tiers[-1].from_std_lots:
            raise ValueError(
                f"tiers[{i}]: from_std_lots {fmt(tier.from_std_lots)} does not ascend "
                f"(previous tier from {fmt(tiers[-1].from_std_lots)})"
            )
        tiers.append(tier)
    return tuple(tiers)


def tier_reached(tiers: Sequence[Tier], std_lots: Decimal) -> Tier | None:
    """The highest tier whose threshold `std_lots` reaches (None: below the first)."""
    reached = [t for t in tiers if std_lots >= t.from_std_lots]
    return max(reached, key=lambda t: t.from_std_lots, default=None)


def direct_std_lots(credits: Iterable[Mapping[str, Any]], ib: str, period: Period) -> Decimal:
    """std_lots of `ib`'s direct clients' earning fills in `period` that still stand.

    A fill revision counts once (its IB commission and its client rebate name the same fill);
    a revision counts no more once any of its credits is reversed (SPEC 4.10 reverses them
    all together). Both are set operations, so the order of `credits` does not matter.
    """
    earned: dict[str, tuple[datetime, Decimal]] = {}
    credit_fill: dict[str, str] = {}
    reversed_ids: set[str] = set()
    for c in credits:
        if c["kind"] == "reversal":
            reversed_ids.add(c["reverses"])
        elif c["kind"] in EARNING_KINDS and c["basis"].get("level") == 1 and _for_ib(c, ib):
            fill = c["fill"]
            key = f"{fill['server']}|{fill['deal']}|{fill['revision']}"
            credit_fill[c["credit_id"]] = key
            earned[key] = (_utc(fill["close_time"]), std_lots_of(c))
    gone = {credit_fill[cid] for cid in reversed_ids if cid in credit_fill}
    return sum(
        (lots for key, (at, lots) in earned.items() if key not in gone and period.contains(at)),
        ZERO,
    )


def tier_bonus_id(ib: str, period_id: str, sequence: int) -> str:
    """Deterministic credit id of an IB-period's tier bonus (0) and its adjustments (1..)."""
    return "cr_" + _digest(f"tier_bonus|{ib}|{period_id}|{sequence}")


def tier_bonus(tiers: Sequence[Tier], std_lots: Decimal) -> Decimal:
    """The bonus a period's `std_lots` earn: the highest tier reached x the lots, to the cent."""
    tier = tier_reached(tiers, std_lots)
    return round_cents(tier.per_lot_bonus_usd * std_lots) if tier else ZERO


def tier_bonus_credit(
    ib: str,
    period: Period,
    tiers: Sequence[Tier],
    std_lots: Decimal,
    paid: Sequence[Mapping[str, Any]] = (),
    *,
    engine_version: str,
) -> dict[str, Any] | None:
    """The tier_bonus credit.v1 due for `ib` and `period` given what is already `paid`.

    Args:
        std_lots: `direct_std_lots` of the period, as known now.
        paid: the tier_bonus credits already emitted for this IB and period.

    Returns:
        sequence 0 (the bonus) when nothing was paid yet, else a numbered adjustment whose
        amount is the difference to what was paid; None when nothing is due.
    """
    paid_before = sum((Decimal(c["amount"]) for c in paid), ZERO)
    return tier_bonus_after(
        ib, period, tiers, std_lots, paid_before, len(paid), engine_version=engine_version
    )


def tier_bonus_after(
    ib: str,
    period: Period,
    tiers: Sequence[Tier],
    std_lots: Decimal,
    paid_before: Decimal,
    sequence: int,
    *,
    engine_version: str,
) -> dict[str, Any] | None:
    """`tier_bonus_credit` from what was paid before as a sum and a count of credits (the live
    settlement keeps those two numbers, not the credits)."""
    tier = tier_reached(tiers, std_lots)
    bonus = tier_bonus(tiers, std_lots)
    amount = bonus - paid_before
    if not amount:
        return None
    lots_text = fmt(std_lots)
    if tier is None:
        formula = f"{lots_text} std lots below the first tier = 0.00"
    else:
        formula = (
            f"{lots_text} std lots x {fmt(tier.per_lot_bonus_usd)} USD/lot (tier from "
            f"{fmt(tier.from_std_lots)} std lots) = {bonus:.2f}"
        )
    basis: dict[str, Any] = {
        "level": 1,
        "method": "tier_bonus",
        "period": period.id,
        "payout": period.kind,
        "period_start": _text(period.start),
        "period_end": _text(period.end),
        "std_lots": lots_text,
        "tiers": [t.to_dict() for t in sorted(tiers, key=lambda t: t.from_std_lots)],
        "tier_reached": tier.to_dict() if tier else None,
        "base": lots_text,
        "rate": fmt(tier.per_lot_bonus_usd) if tier else "0",
        "bonus": f"{bonus:.2f}",
        "sequence": sequence,
        "formula": formula,
    }
    if sequence:
        basis["adjusts"] = tier_bonus_id(ib, period.id, 0)
        basis["paid_before"] = f"{paid_before:.2f}"
        basis["formula"] = f"{formula}; {bonus:.2f} - {paid_before:.2f} paid = {amount:.2f}"
    return {
        "schema": "credit.v1",
        "credit_id": tier_bonus_id(ib, period.id, sequence),
        "kind": "tier_bonus",
        "beneficiary": {"type": "ib", "id": ib},
        "amount": f"{amount:.2f}",
        "currency": "USD",
        "fill": None,
        "basis": basis,
        "reverses": None,
        "engine_version": engine_version,
    }


# -- the payout fold: which period a credit is paid in, and what is due ----------------------


@dataclass(frozen=True, slots=True)
class PayoutTerms:
    """What decides an IB's payout for one period: its kind, hold and tier table."""

    kind: str
    hold_hours: int
    tiers: tuple[Tier, ...]


_HOURLY = PayoutTerms("hourly", 0, ())


def payout_period(book: RuleBook, ib: str, at: datetime) -> tuple[Period, PayoutTerms]:
    """The payout period of `ib` that pays a credit placed at `at`, and the terms of it.

    The terms of a period are those in force at the period's START, not its end: a change of
    hold, plan or tier table made inside a period then applies from the next period, so no
    change ever reaches back over fills already made (SPEC 3: never retroactive), and a partner
    knows the terms of a period when it begins. For the same reason a new payout kind applies
    from the first period of the new kind that starts at or after the change; until then the
    credit stays in the period of the kind in force at that period's start (one step back: two
    changes of kind inside one period are not chained). Each credit still lands in exactly one
    period, so nothing is paid twice; see the README.
    An IB that did not yet exist at the period's start takes the terms it was created with.
    """
    current = book.get("ib", ib, at)
    if current is None:  # not attributed to a known IB at that time: settled hourly, as ever
        return period_of("hourly", at), _HOURLY
    period = period_of(current.payout, at)
    at_start = book.get("ib", ib, period.start)
    if at_start is not None and at_start.payout != current.payout:
        period = period_of(at_start.payout, at)
    return period, _terms(book, book.get("ib", ib, period.start) or current, period, at)


def period_terms(book: RuleBook, ib: str, period: Period) -> PayoutTerms:
    """The terms of `ib`'s `period` when only the period is known (the live settlement).

    As `payout_period`: the IB at the period's start; an IB created inside the period takes
    the terms in force at the period's last instant (`payout_period` those at the credit's
    instant: the two differ only for an IB whose terms change again inside the period it was
    created in).
    """
    last = period.end - timedelta(microseconds=1)
    terms_ib = book.get("ib", ib, period.start) or book.get("ib", ib, last)
    return _HOURLY if terms_ib is None else _terms(book, terms_ib, period, last)


def _terms(book: RuleBook, terms_ib: Ib, period: Period, fallback: datetime) -> PayoutTerms:
    """`terms_ib`'s hold and its plan's tiers as at the period's start (else at `fallback`)."""
    plan = book.get("plan", terms_ib.plan, period.start) or book.get(
        "plan", terms_ib.plan, fallback
    )
    return PayoutTerms(period.kind, terms_ib.hold_hours, plan.tiers if plan else ())


@dataclass(frozen=True, slots=True)
class Payouts:
    """What a fold over credits says is due: settlement events and tier_bonus credits."""

    settlements: tuple[dict[str, Any], ...]
    tier_bonuses: tuple[dict[str, Any], ...]


def payouts_due(
    credits: Iterable[Mapping[str, Any]],
    book: RuleBook,
    *,
    engine_version: str,
    now: datetime | None = None,
) -> Payouts:
    """Settlement events and tier bonuses of every IB period payable at `now`.

    A fold over credit.v1 dicts in any order (the set decides, not the order). `now` None means
    later than every hold, as at the end of an offline replay: every period is settled, once,
    as sequence 0. Events come sorted by period start, IB; tier bonuses likewise.

    Args:
        credits: every credit of the run (all IBs; reversals included).
        book: the rules, for each IB's payout kind, hold and plan tiers (`payout_period`).
    """
    # Fills arrive close together: one rule lookup per (IB, instant text), not per credit.
    memo: dict[tuple[str, str], tuple[Period, PayoutTerms]] = {}
    totals: dict[tuple[str, Period], tuple[Decimal, int]] = {}
    terms: dict[tuple[str, Period], PayoutTerms] = {}
    tiered: dict[tuple[str, Period], list[Mapping[str, Any]]] = {}
    reversals: list[Mapping[str, Any]] = []
    for c in credits:
        if c["kind"] == "reversal":
            reversals.append(c)
        for ib, text, settled in _payout_roles(c):
            key = (ib, text)
            if key not in memo:
                memo[key] = payout_period(book, ib, _utc(text))
            period, period_terms = memo[key]
            slot = (ib, period)
            terms[slot] = period_terms
            if settled:
                amount, count = totals.get(slot, (ZERO, 0))
                totals[slot] = (
                    amount + Decimal(c["amount"]),
                    count + (-1 if c["kind"] == "reversal" else 1),
                )
            elif period_terms.tiers:
                tiered.setdefault(slot, []).append(c)

    def payable(slot: tuple[str, Period]) -> bool:
        return now is None or slot[1].payable_at(terms[slot].hold_hours) <= now

    def order(slot: tuple[str, Period]) -> tuple[datetime, str, str]:
        return slot[1].start, slot[0], slot[1].kind

    events = []
    for slot in sorted(filter(payable, totals), key=order):
        report = next_report(None, *totals[slot])
        if report is not None:
            events.append(settlement_event(*slot, report, engine_version=engine_version))
    bonuses = []
    for slot in sorted(filter(payable, tiered), key=order):
        ib, period = slot
        lots = direct_std_lots([*tiered[slot], *reversals], ib, period)
        credit = tier_bonus_credit(
            ib, period, terms[slot].tiers, lots, engine_version=engine_version
        )
        if credit is not None:
            bonuses.append(credit)
    return Payouts(tuple(events), tuple(bonuses))


def _payout_roles(credit: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(IB, instant text, settled?) for each way a credit counts in an IB's payout.

    Settled: an IB's commission kind or its reversal, placed by `credit_period_start`.
    Not settled: a level-1 earning credit, whose fill's lots count for the direct IB's tiers.
    """
    kind = credit["kind"]
    basis = credit["basis"]
    beneficiary = credit["beneficiary"]
    roles = []
    if beneficiary["type"] == "ib":
        counted = basis.get("reversed_kind", kind) if kind == "reversal" else kind
        if counted in SETTLED_KINDS:
            roles.append((beneficiary["id"], _placing_time(credit), True))
    if kind in EARNING_KINDS and basis.get("level") == 1:
        ib = _direct_ib(credit)
        if ib is not None:
            roles.append((ib, credit["fill"]["close_time"], False))
    return roles


def _direct_ib(credit: Mapping[str, Any]) -> str | None:
    """The IB an earning credit's fill counts for: a client's rebate names it in its basis."""
    if credit["kind"] == "client_rebate":
        ib = credit["basis"].get("ib")
        return None if ib is None else str(ib)
    return str(credit["beneficiary"]["id"])


def _for_ib(credit: Mapping[str, Any], ib: str) -> bool:
    return _direct_ib(credit) == ib


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _text(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

"""Partner statements and reconciliation (SPEC 6 [r2]); pure: credit.v1 and settlement.v1 dicts in.

A statement is what one IB is paid for one payout period: every credit to the IB that belongs to
the period (a reversal by the credit it reverses), each with its basis formula, grouped per
client, symbol, rule and level, totalled per day, and checked against the settlement events of
the period. Settlement events sum the commission kinds only (`SETTLED_KINDS`); a tier bonus is
its own credit and is shown, totalled, but not expected in them.

Credits name the account (login), not the client; the client is taken from any credit that
pays a client for a fill of that login (its rebate or loyalty accrual), else the login is shown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.money import ZERO
from engine.payouts import SETTLED_KINDS, Period, credit_period_start, parse_period, std_lots_of

__all__ = [
    "Group",
    "Reconciliation",
    "Statement",
    "StatementLine",
    "reconcile",
    "statement",
]

_ALL_CLIENTS = "all direct clients"


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One credit as a partner reads it."""

    credit_id: str
    kind: str  # the credit's kind; for a reversal, "reversal of <kind>"
    at: datetime  # the instant that places it in the period (see credit_period_start)
    client: str
    login: str
    symbol: str
    deal: str
    rule: str
    level: int
    std_lots: Decimal  # negative for a reversal: it takes the lots back
    amount: Decimal
    formula: str
    settled: bool  # counted by the settlement events (commission kinds and their reversals)

    @property
    def day(self) -> str:
        return self.at.strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class Group:
    """Lines sharing one key: their net count (a reversal counts -1), lots and amount."""

    key: str
    count: int
    std_lots: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Settled credits against settlement events, for one IB and period."""

    ib: str
    credits_amount: Decimal
    credits_count: int
    events_amount: Decimal
    events_count: int
    events: int  # settlement events and adjustments read

    @property
    def difference(self) -> Decimal:
        return self.credits_amount - self.events_amount

    @property
    def equal(self) -> bool:
        return not self.difference and self.credits_count == self.events_count

    def describe(self) -> str:
        if self.equal:
            return (
                f"{self.ib}: reconciled: credits {self.credits_amount:.2f} USD in "
                f"{self.credits_count} = {self.events} settlement events "
                f"{self.events_amount:.2f} USD in {self.events_count}"
            )
        return (
            f"{self.ib}: DIFFERENCE {self.difference:.2f} USD, "
            f"{self.credits_count - self.events_count} credits: credits "
            f"{self.credits_amount:.2f} USD in {self.credits_count}, {self.events} settlement "
            f"events {self.events_amount:.2f} USD in {self.events_count}"
        )


@dataclass(frozen=True, slots=True)
class Statement:
    ib: str
    period: Period
    lines: tuple[StatementLine, ...]
    reconciliation: Reconciliation | None = None
    by: Mapping[str, tuple[Group, ...]] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def settled_total(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.settled), ZERO)

    @property
    def tier_bonus_total(self) -> Decimal:
        return sum((line.amount for line in self.lines if line.kind == "tier_bonus"), ZERO)

    def daily(self) -> tuple[Group, ...]:
        """Every UTC day of the period (also days without credits) with its fills' credits.

        A tier bonus pays the whole period, no day of it: it is left out here.
        """
        days = _groups((ln for ln in self.lines if ln.kind != "tier_bonus"), lambda ln: ln.day)
        found = {g.key: g for g in days}
        out = []
        day = self.period.start
        while day < self.period.end:
            key = day.strftime("%Y-%m-%d")
            out.append(found.get(key, Group(key, 0, ZERO, ZERO)))
            day += timedelta(days=1)
        return tuple(out)


def statement(
    credits: Iterable[Mapping[str, Any]],
    ib: str,
    period: Period,
    settlements: Iterable[Mapping[str, Any]] | None = None,
) -> Statement:
    """What `ib` is paid for `period`, from credit.v1 dicts (any order, other IBs ignored).

    With `settlements` (settlement.v1 dicts), the settled credits are reconciled with them.
    """
    credits = list(credits)
    lines = _lines_of(credits, ib, period, _clients_by_login(credits), _rules_by_id(credits))
    recon = None
    if settlements is not None:
        recon = _reconcile_ib(ib, period, lines, list(settlements))
    by = {
        "client": _groups(lines, lambda line: line.client),
        "symbol": _groups(lines, lambda line: line.symbol),
        "rule": _groups(lines, lambda line: line.rule),
        "level": _groups(lines, lambda line: f"L{line.level}"),
    }
    return Statement(ib, period, tuple(lines), recon, by)


def reconcile(
    credits: Iterable[Mapping[str, Any]],
    settlements: Iterable[Mapping[str, Any]],
    period: Period,
) -> tuple[Reconciliation, ...]:
    """Per IB with settled credits or settlement events in `period`: the two sums to the cent."""
    credits = list(credits)
    events = list(settlements)
    clients, rules = _clients_by_login(credits), _rules_by_id(credits)
    ibs = {c["beneficiary"]["id"] for c in credits if _settled(c)} | {e["ib"] for e in events}
    return tuple(
        _reconcile_ib(ib, period, _lines_of(credits, ib, period, clients, rules), events)
        for ib in sorted(ibs)
    )


def _lines_of(
    credits: Sequence[Mapping[str, Any]],
    ib: str,
    period: Period,
    clients: Mapping[str, str],
    rules: Mapping[str, str],
) -> list[StatementLine]:
    return sorted(
        (
            _line(c, clients, rules)
            for c in credits
            if _pays(c, ib) and period.contains(credit_period_start(c))
        ),
        key=lambda line: (line.at, line.credit_id),
    )


def _reconcile_ib(
    ib: str, period: Period, lines: Sequence[StatementLine], events: Sequence[Mapping[str, Any]]
) -> Reconciliation:
    settled = [line for line in lines if line.settled]
    mine = [e for e in events if e["ib"] == ib and period.contains(_event_start(e))]
    return Reconciliation(
        ib,
        sum((line.amount for line in settled), ZERO),
        sum(-1 if line.kind.startswith("reversal") else 1 for line in settled),
        sum((Decimal(e["amount"]) for e in mine), ZERO),
        sum(int(e["count"]) for e in mine),
        len(mine),
    )


def _event_start(event: Mapping[str, Any]) -> datetime:
    # Hourly events name their hour; a period's event (payout periods) names its period id.
    if "period" in event:
        return parse_period(event["period"]).start
    return datetime.fromisoformat(event["hour"]).astimezone(UTC)


def _pays(credit: Mapping[str, Any], ib: str) -> bool:
    beneficiary = credit["beneficiary"]
    return bool(beneficiary["type"] == "ib" and beneficiary["id"] == ib)


def _kind(credit: Mapping[str, Any]) -> str:
    """The kind a credit counts as: a reversal counts as the kind it reverses."""
    if credit["kind"] == "reversal":
        return str(credit["basis"].get("reversed_kind", "reversal"))
    return str(credit["kind"])


def _settled(credit: Mapping[str, Any]) -> bool:
    return credit["beneficiary"]["type"] == "ib" and _kind(credit) in SETTLED_KINDS


def _rule_of(credit: Mapping[str, Any]) -> str:
    basis = credit["basis"]
    if credit["kind"] == "tier_bonus":
        return "tier_bonus"
    rule = basis.get("rule") or basis.get("method", "?")
    return f"{basis['plan']}: {rule}" if "plan" in basis else str(rule)


def _rules_by_id(credits: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {c["credit_id"]: _rule_of(c) for c in credits}


def _clients_by_login(credits: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {
        str(c["fill"]["login"]): c["beneficiary"]["id"]
        for c in credits
        if c["beneficiary"]["type"] == "client" and c.get("fill")
    }


def _line(
    credit: Mapping[str, Any], clients: Mapping[str, str], rules: Mapping[str, str]
) -> StatementLine:
    basis = credit["basis"]
    fill = credit.get("fill")
    reversal = credit["kind"] == "reversal"
    if fill is None:  # a tier bonus: the period's volume of every direct client
        client, login, symbol, deal = _ALL_CLIENTS, "", "*", ""
        lots = ZERO
    else:
        login = str(fill["login"])
        client = clients.get(login, f"login {login}")
        symbol, deal = fill["symbol"], str(fill["deal"])
        lots = -std_lots_of(credit) if reversal else std_lots_of(credit)
    return StatementLine(
        credit_id=credit["credit_id"],
        kind=f"reversal of {_kind(credit)}" if reversal else credit["kind"],
        at=credit_period_start(credit),
        client=client,
        login=login,
        symbol=symbol,
        deal=deal,
        rule=rules.get(credit["reverses"], "reversal") if reversal else rules[credit["credit_id"]],
        level=int(basis.get("level", 0)),
        std_lots=lots,
        amount=Decimal(credit["amount"]),
        formula=str(basis.get("formula", "")),
        settled=_settled(credit),
    )


def _groups(lines: Iterable[StatementLine], key: Any) -> tuple[Group, ...]:
    count: dict[str, int] = defaultdict(int)
    lots: dict[str, Decimal] = defaultdict(Decimal)
    amount: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        k = key(line)
        count[k] += -1 if line.kind.startswith("reversal") else 1
        lots[k] += line.std_lots
        amount[k] += line.amount
    return tuple(Group(k, count[k], lots[k], amount[k]) for k in sorted(amount))

"""Attribution and rules (SPEC 3): what is in force for a login at a given instant.

Every item is effective-dated and nothing is retroactive. The seed and every admin command are
turned into `Change`s (subject, id, instant, fields); `RuleBook` folds them in time order into
versions, so `resolve(login, close_time)` answers with the rules in force when the order closed,
whatever was changed afterwards.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, overload

from engine.errors import ConfigError
from engine.money import fmt
from engine.payouts import PERIODS, Tier, parse_tiers

__all__ = [
    "CENT_LOT_SCALE",
    "SUBJECTS",
    "Account",
    "Attribution",
    "Change",
    "Client",
    "Ib",
    "Loyalty",
    "Plan",
    "Rule",
    "RuleBook",
    "SymbolMap",
    "Upline",
    "is_cent_type",
]

SUBJECTS = ("account", "client", "ib", "plan", "loyalty", "symbols", "account_type")
_GLOBAL = ""  # id of the singleton subjects (loyalty, symbols)
METHODS = ("per_lot_usd", "spread_pct", "commission_pct")
CENT_LOT_SCALE = Decimal("0.01")
_ONE = Decimal(1)
# A client's rebate override belongs to the (client, IB) pair (SPEC 3 r2): these fields end
# when the client moves to another IB.
_PAIR_FIELDS = ("rebate_pct", "rebate_status")


@dataclass(frozen=True, slots=True)
class Change:
    """One effective-dated change: `fields` replace the subject's fields from `at` on.

    `seq` orders changes with the same `at` (later wins): the seed's item order, then the
    admin log's order.
    """

    at: datetime
    subject: str
    id: str
    fields: Mapping[str, Any]
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Account:
    login: int
    client: str
    type: str
    live: bool = True


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    ib: str | None = None
    verified: bool = False
    rebate_pct: Decimal | None = None
    """Client override of the IB's default rebate pct; None = use the IB default."""
    rebate_status: str = "active"  # active | suspended | cancelled


@dataclass(frozen=True, slots=True)
class Ib:
    id: str
    plan: str
    parent: str | None = None
    rebate_pct: Decimal = Decimal(0)
    client: str | None = None
    """The IB's own client id: trades of its accounts are self trades."""
    status: str = "active"  # active | suspended | terminated
    partner_code: str = ""
    """The referral code (`?ref=32071`); the builder defaults it to the IB id."""
    payout: str = "hourly"  # hourly | daily | weekly | monthly (engine/payouts.py)
    hold_hours: int = 0
    """How long after its payout period ends the period is settled."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One plan rule. `index` is its position in the plan, named in every credit's basis."""

    index: int
    account_types: tuple[str, ...]
    symbols: tuple[str, ...]
    method: str  # one of METHODS
    rate: Decimal
    max_usd_per_lot: Decimal | None = None
    client_rebate_usd_per_lot: Decimal | None = None
    """A client rebate quoted in USD per standard lot instead of a percentage (SPEC 4.4 r2)."""
    id: str | None = None
    """The seed's name for the rule, quoted in every credit's basis."""
    label: str = field(init=False, compare=False)
    """How the rule reads in a credit's basis, e.g. "#2 types=standard symbols=* per_lot_usd=15"."""
    rate_text: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per rule, not once per credit: both appear in every credit's basis.
        cap = f" cap {self.max_usd_per_lot}/lot" if self.max_usd_per_lot is not None else ""
        per_lot = self.client_rebate_usd_per_lot
        rebate = f" client_rebate {per_lot}/lot" if per_lot is not None else ""
        label = (
            f"#{self.index} types={','.join(self.account_types)} "
            f"symbols={','.join(self.symbols)} {self.method}={self.rate}{cap}{rebate}"
        )
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "rate_text", fmt(self.rate))


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    rules: tuple[Rule, ...]
    upline_override_pct: tuple[Decimal, ...] = ()
    min_hold_seconds: int = 0
    min_points: int = 0
    exclude_self_trades: bool = True
    tiers: tuple[Tier, ...] = ()
    """Volume tiers per payout period of the IB (SPEC 6), ascending; empty: no tier bonus."""


@dataclass(frozen=True, slots=True)
class Loyalty:
    accrual_pct: Decimal = Decimal(10)
    coverage_pct: Decimal = Decimal(50)
    exclude_ib_referred: bool = False
    accrual_text: str = field(init=False, compare=False)
    coverage_text: str = field(init=False, compare=False)

    def __post_init__(self) -> None:  # formatted once, quoted in every loyalty credit
        object.__setattr__(self, "accrual_text", fmt(self.accrual_pct))
        object.__setattr__(self, "coverage_text", fmt(self.coverage_pct))


@dataclass(frozen=True, slots=True)
class SymbolMap:
    suffixes: tuple[str, ...] = ()
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def normalize(self, symbol: str) -> str:
        """Strip the first (longest) matching server suffix: "XAUUSD.m" -> "XAUUSD"."""
        upper = symbol.upper()
        for suffix in self.suffixes:  # sorted longest first at construction
            if upper.endswith(suffix) and len(upper) > len(suffix):
                return upper[: -len(suffix)]
        return upper


def is_cent_type(account_type: str) -> bool:
    """A cent type is one whose name has the word "cent" (standard_cent, cent, cent-pro).

    Words, not a substring: "percent_pro" is no cent type. Any other name that trades cent
    lots says so with `account_types: {name: {lot_scale: "0.01"}}` in the seed.
    """
    return "cent" in re.split(r"[^a-z0-9]+", account_type.lower())


@dataclass(frozen=True, slots=True)
class Upline:
    """An IB above the direct IB: `level` 2 is the direct IB's parent."""

    level: int
    ib: Ib
    plan: Plan


@dataclass(frozen=True, slots=True)
class Attribution:
    """Everything in force for one login at one instant."""

    account: Account
    client: Client
    ib: Ib | None
    plan: Plan | None
    uplines: tuple[Upline, ...]
    loyalty: Loyalty
    symbols: SymbolMap
    type_lot_scale: Decimal | None = None
    """The seed's `account_types[type].lot_scale`, when it names this account's type."""

    def lot_scale(self, currency: str) -> Decimal:
        """Standard lots per lot of this account (SPEC 3 r2).

        The seed's lot_scale for the account type wins; else 0.01 for a cent type or a USC
        account (one cent lot is 1/100 of a standard lot), else 1.
        """
        if self.type_lot_scale is not None:
            return self.type_lot_scale
        if currency == "USC" or is_cent_type(self.account.type):
            return CENT_LOT_SCALE
        return _ONE


class _Timeline:
    """Versions of one subject, sorted by effective time."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.values: list[Any] = []

    def at(self, when: datetime) -> Any:
        # Fast path: most subjects never change after they are created.
        if len(self.times) == 1:
            return self.values[0] if self.times[0] <= when else None
        i = bisect.bisect_right(self.times, when)
        return self.values[i - 1] if i else None


class RuleBook:
    """The folded history of every rule subject; answers `resolve(login, at)`."""

    def __init__(self, changes: Iterable[Change] = (), *, depth_limit: int = 10) -> None:
        self.depth_limit = depth_limit
        self._changes: dict[tuple[str, str], list[Change]] = {}
        self._timelines: dict[tuple[str, str], _Timeline] = {}
        self._rule_cache: dict[tuple[int, int, str, str], Rule | None] = {}
        # Attribution only changes at a change instant, so (login, epoch) is a safe cache key:
        # the epoch is the index of the last change instant at or before the fill's close.
        self._instants: list[datetime] = []
        self._resolved: dict[tuple[int, int], Attribution | None] = {}
        self._seq = 0
        self.extend(changes)

    # -- building ------------------------------------------------------------------------

    def extend(self, changes: Iterable[Change]) -> None:
        """Add changes (seed items, admin commands, back-office events); refold what they touch.

        Raises:
            ConfigError: the batch does not fold (a revived rebate); the book is left unchanged.
        """
        added: list[tuple[str, str]] = []
        instants: set[datetime] = set()
        for change in changes:
            if change.subject not in SUBJECTS:
                self._forget(added)
                raise ConfigError("schema", f"unknown subject {change.subject!r}")
            self._seq += 1
            key = (change.subject, change.id)
            self._changes.setdefault(key, []).append(
                Change(change.at, change.subject, change.id, change.fields, self._seq)
            )
            added.append(key)
            instants.add(change.at)
        touched = set(added)
        try:
            folded = {key: self._fold(key) for key in touched}
        except ConfigError:
            self._forget(added)  # a refused batch leaves the book as it was
            raise
        self._timelines.update(folded)
        if touched:
            self._rule_cache.clear()
            self._resolved.clear()
            # Merged, not recomputed from every change: back-office events extend one by one.
            for at in sorted(instants):
                i = bisect.bisect_left(self._instants, at)
                if i == len(self._instants) or self._instants[i] != at:
                    self._instants.insert(i, at)

    def check_extend(self, changes: Sequence[Change]) -> None:
        """Raise what `extend(changes)` would raise, leaving the book as it is.

        Raises:
            ConfigError: the changes do not fold (an unknown subject, a revived rebate).
        """
        added: list[tuple[str, str]] = []
        try:
            for n, change in enumerate(changes, start=1):
                if change.subject not in SUBJECTS:
                    raise ConfigError("schema", f"unknown subject {change.subject!r}")
                key = (change.subject, change.id)
                self._changes.setdefault(key, []).append(
                    Change(change.at, change.subject, change.id, change.fields, self._seq + n)
                )
                added.append(key)
            for key in set(added):
                self._fold(key)
        finally:
            for key in reversed(added):
                self._changes[key].pop()
                if not self._changes[key]:
                    del self._changes[key]

    def _forget(self, added: list[tuple[str, str]]) -> None:
        for key in reversed(added):
            self._changes[key].pop()
            if not self._changes[key]:
                del self._changes[key]
        self._seq -= len(added)

    def _fold(self, key: tuple[str, str]) -> _Timeline:
        subject, ident = key
        timeline = _Timeline()
        current: dict[str, Any] = {}
        for change in sorted(self._changes[key], key=lambda c: (c.at, c.seq)):
            if (
                subject == "client"
                and "ib" in change.fields
                and change.fields["ib"] != current.get("ib", change.fields["ib"])
            ):
                # A move to another IB ends the old pair's override and its status: the new
                # IB's default applies until an override is set under the new IB.
                current = {k: v for k, v in current.items() if k not in _PAIR_FIELDS}
            reactivates = change.fields.get("rebate_status", "cancelled") != "cancelled"
            if subject == "client" and current.get("rebate_status") == "cancelled" and reactivates:
                raise ConfigError(
                    "schema",
                    f"client {ident}: a cancelled rebate cannot be reactivated "
                    f"(change at {change.at.isoformat()})",
                )
            current = {**current, **change.fields}
            value = _BUILDERS[subject](ident, current)
            if timeline.times and timeline.times[-1] == change.at:
                timeline.values[-1] = value
            else:
                timeline.times.append(change.at)
                timeline.values.append(value)
        return timeline

    # -- lookups -------------------------------------------------------------------------

    # What each subject's versions are: callers get a typed value, not Any.
    @overload
    def get(self, subject: Literal["account"], ident: str, at: datetime) -> Account | None: ...
    @overload
    def get(self, subject: Literal["client"], ident: str, at: datetime) -> Client | None: ...
    @overload
    def get(self, subject: Literal["ib"], ident: str, at: datetime) -> Ib | None: ...
    @overload
    def get(self, subject: Literal["plan"], ident: str, at: datetime) -> Plan | None: ...
    @overload
    def get(self, subject: Literal["loyalty"], ident: str, at: datetime) -> Loyalty | None: ...
    @overload
    def get(self, subject: Literal["symbols"], ident: str, at: datetime) -> SymbolMap | None: ...
    @overload
    def get(self, subject: Literal["account_type"], ident: str, at: datetime) -> Decimal | None: ...
    def get(self, subject: str, ident: str, at: datetime) -> object:
        timeline = self._timelines.get((subject, ident))
        return timeline.at(at) if timeline else None

    def loyalty(self, at: datetime) -> Loyalty:
        value: Loyalty | None = self.get("loyalty", _GLOBAL, at)
        return value or Loyalty()

    def symbols(self, at: datetime) -> SymbolMap:
        value: SymbolMap | None = self.get("symbols", _GLOBAL, at)
        return value or SymbolMap()

    def subjects(self, subject: str) -> list[str]:
        return sorted(ident for (s, ident) in self._timelines if s == subject)

    def versions(self, subject: str, ident: str) -> tuple[object, ...]:
        """Every version the subject had, oldest first (engine/late.py: what a change touches)."""
        timeline = self._timelines.get((subject, ident))
        return tuple(timeline.values) if timeline else ()

    def resolve(self, login: int, at: datetime) -> Attribution | None:
        """The attribution in force at `at`; None for a login unknown at that time.

        Raises:
            ConfigError: an IB cycle, or a reference to an unknown client, IB or plan.
        """
        key = (login, bisect.bisect_right(self._instants, at))
        try:
            return self._resolved[key]
        except KeyError:
            pass
        attribution = self._resolve(login, at)  # a ConfigError is not cached: it is rare
        if len(self._resolved) > 200_000:  # bound memory on very large books
            self._resolved.clear()
        self._resolved[key] = attribution
        return attribution

    def _resolve(self, login: int, at: datetime) -> Attribution | None:
        account: Account | None = self.get("account", str(login), at)
        if account is None:
            return None
        client: Client | None = self.get("client", account.client, at)
        if client is None:
            raise ConfigError("unknown_client", f"account {login}: unknown client")
        ib = plan = None
        uplines: list[Upline] = []
        if client.ib is not None:
            ib = self._ib(client.ib, at, f"client {client.id}")
            plan = self._plan(ib, at)
            uplines = self._uplines(ib, at)
        type_scale: Decimal | None = self.get("account_type", account.type, at)
        return Attribution(
            account,
            client,
            ib,
            plan,
            tuple(uplines),
            self.loyalty(at),
            self.symbols(at),
            type_scale,
        )

    def _ib(self, ident: str, at: datetime, referrer: str) -> Ib:
        ib: Ib | None = self.get("ib", ident, at)
        if ib is None:
            raise ConfigError("unknown_ib", f"{referrer}: unknown IB {ident!r}")
        return ib

    def _plan(self, ib: Ib, at: datetime) -> Plan:
        plan: Plan | None = self.get("plan", ib.plan, at)
        if plan is None:
            raise ConfigError("unknown_plan", f"IB {ib.id}: unknown plan {ib.plan!r}")
        return plan

    def _uplines(self, direct: Ib, at: datetime) -> list[Upline]:
        """Walk the parents of `direct`: paid up to the depth limit, checked to the root.

        The walk continues past the depth limit (without paying) so that a cycle is always
        reported as a configuration error instead of being silently cut off.
        """
        uplines: list[Upline] = []
        chain = [direct.id]
        node = direct
        level = 1
        while node.parent is not None:
            if node.parent in chain:
                raise ConfigError("ib_cycle", f"IB cycle: {' -> '.join([*chain, node.parent])}")
            parent = self._ib(node.parent, at, f"IB {node.id}")
            chain.append(parent.id)
            level += 1
            if level <= self.depth_limit:
                uplines.append(Upline(level, parent, self._plan(parent, at)))
            node = parent
        return uplines

    def match_rule(
        self, plan: Plan, symbols: SymbolMap, account_type: str, symbol: str
    ) -> Rule | None:
        """The plan's most specific rule for this account type and symbol.

        Specificity: exact symbol > symbol group > "*"; then exact account type > "*"; then
        the rule's order in the plan.
        """
        key = (id(plan), id(symbols), account_type, symbol)
        try:
            return self._rule_cache[key]
        except KeyError:
            pass
        normalized = symbols.normalize(symbol)
        best: tuple[int, int, int] | None = None
        chosen: Rule | None = None
        for rule in plan.rules:
            if account_type in rule.account_types:
                type_score = 1
            elif "*" in rule.account_types:
                type_score = 0
            else:
                continue
            symbol_score = _symbol_score(rule.symbols, normalized, symbols)
            if symbol_score < 0:
                continue
            score = (symbol_score, type_score, -rule.index)
            if best is None or score > best:
                best, chosen = score, rule
        self._rule_cache[key] = chosen
        return chosen


def _symbol_score(patterns: tuple[str, ...], symbol: str, symbols: SymbolMap) -> int:
    score = -1
    for pattern in patterns:
        if pattern.upper() == symbol:
            return 2
        group = symbols.groups.get(pattern)
        if group is not None and symbol in group:
            score = max(score, 1)
        elif pattern == "*":
            score = max(score, 0)
    return score


# -- building domain values from folded fields -----------------------------------------------


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _opt_dec(value: Any) -> Decimal | None:
    return None if value is None else _dec(value)


def _build_account(ident: str, f: Mapping[str, Any]) -> Account:
    return Account(
        int(ident), str(f["client"]), str(f.get("type", "standard")), bool(f.get("live", True))
    )


def _build_client(ident: str, f: Mapping[str, Any]) -> Client:
    return Client(
        ident,
        f.get("ib"),
        bool(f.get("verified", False)),
        _opt_dec(f.get("rebate_pct")),
        str(f.get("rebate_status", "active")),
    )


def _build_ib(ident: str, f: Mapping[str, Any]) -> Ib:
    return Ib(
        ident,
        str(f["plan"]),
        f.get("parent"),
        _dec(f.get("rebate_pct", 0)),
        f.get("client"),
        str(f.get("status", "active")),
        str(f.get("partner_code") or ident),
        _payout_kind(ident, f.get("payout", "hourly")),
        _hold_hours(ident, f.get("hold_hours", 0)),
    )


def _payout_kind(ident: str, value: Any) -> str:
    if value not in PERIODS:
        raise ConfigError("schema", f"IB {ident}: payout {value!r} is not one of {PERIODS}")
    return str(value)


def _hold_hours(ident: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError("schema", f"IB {ident}: hold_hours {value!r} is not a whole number >= 0")
    return value


def _build_rule(index: int, f: Mapping[str, Any]) -> Rule:
    methods = [m for m in METHODS if f.get(m) is not None]
    if len(methods) != 1:
        raise ConfigError("schema", f"rule #{index} needs exactly one of {', '.join(METHODS)}")
    return Rule(
        index,
        tuple(str(t) for t in f.get("account_types", ["*"])),
        tuple(str(s) for s in f.get("symbols", ["*"])),
        methods[0],
        _dec(f[methods[0]]),
        _opt_dec(f.get("max_usd_per_lot")),
        _opt_dec(f.get("client_rebate_usd_per_lot")),
        None if f.get("id") is None else str(f["id"]),
    )


def _build_plan(ident: str, f: Mapping[str, Any]) -> Plan:
    return Plan(
        ident,
        tuple(_build_rule(i, r) for i, r in enumerate(f.get("rules", []), start=1)),
        tuple(_dec(p) for p in f.get("upline_override_pct", [])),
        int(f.get("min_hold_seconds", 0)),
        int(f.get("min_points", 0)),
        bool(f.get("exclude_self_trades", True)),
        _tiers(ident, f.get("tiers") or ()),
    )


def _tiers(ident: str, rows: Any) -> tuple[Tier, ...]:
    try:
        return parse_tiers(rows)
    except ValueError as exc:
        raise ConfigError("schema", f"plan {ident}: {exc}") from None


def _build_loyalty(_: str, f: Mapping[str, Any]) -> Loyalty:
    return Loyalty(
        _dec(f.get("accrual_pct", 10)),
        _dec(f.get("coverage_pct", 50)),
        bool(f.get("exclude_ib_referred", False)),
    )


def _build_symbols(_: str, f: Mapping[str, Any]) -> SymbolMap:
    suffixes = sorted({str(s).upper() for s in f.get("suffixes", [])}, key=len, reverse=True)
    groups = {
        str(name): frozenset(str(s).upper() for s in members)
        for name, members in dict(f.get("groups", {})).items()
    }
    return SymbolMap(tuple(suffixes), groups)


def _build_account_type(_: str, f: Mapping[str, Any]) -> Decimal | None:
    return _opt_dec(f.get("lot_scale"))


_BUILDERS: dict[str, Any] = {
    "account_type": _build_account_type,
    "account": _build_account,
    "client": _build_client,
    "ib": _build_ib,
    "plan": _build_plan,
    "loyalty": _build_loyalty,
    "symbols": _build_symbols,
}


# -- rule-change validation (the seed, the admin command, back-office events) -----------------


def change_refusal(existing: Sequence[Change], added: Sequence[Change]) -> str | None:
    """Why appending `added` to `existing` would break the rules, or None when it would not.

    From the first added change's instant on, at every change instant: the rules still fold
    (a cancelled rebate is never reactivated), no new IB cycle appears, and every login
    still resolves (known client, IB and plan). Only new problems count: one the rules had
    before is not the added changes' fault.
    """
    if not added:
        return None
    try:
        after = RuleBook([*existing, *added])
    except ConfigError as exc:
        return str(exc)
    before = RuleBook(existing)
    start = min(c.at for c in added)
    for at in sorted({c.at for c in (*existing, *added) if c.at >= start}):
        cycle = ib_cycle(after, at)
        if cycle and cycle != ib_cycle(before, at):
            return f"would create an IB cycle at {at:%Y-%m-%dT%H:%M:%SZ}: {cycle}"
        for login in after.subjects("account"):
            problem = _resolve_problem(after, int(login), at)
            if problem and problem != _resolve_problem(before, int(login), at):
                return f"login {login} would not resolve at {at:%Y-%m-%dT%H:%M:%SZ}: {problem}"
    return None


def ib_cycle(book: RuleBook, at: datetime) -> str | None:
    """The first IB cycle in force at `at` (as `A -> B -> A`), else None."""
    for ident in book.subjects("ib"):
        chain = [ident]
        ib = book.get("ib", ident, at)
        while ib is not None and ib.parent is not None:
            if ib.parent in chain:
                return " -> ".join([*chain[chain.index(ib.parent) :], ib.parent])
            chain.append(ib.parent)
            ib = book.get("ib", ib.parent, at)
    return None


def _resolve_problem(book: RuleBook, login: int, at: datetime) -> str | None:
    try:
        book.resolve(login, at)
    except ConfigError as exc:
        return str(exc)
    return None

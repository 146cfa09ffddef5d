"""Late back-office changes re-settle what they touch (SPEC 3 r2, "Late back-office data").

A change whose `at` lies before fills already settled (a client moved, a rebate set, an IB's
plan or parent changed, an account's type) re-settles the fills with close_time >= `at` of the
logins it touches, through the update machinery of SPEC 4.10: reversals naming what they
reverse, then the recomputed credits, with `"reason": "late_change"` in their basis.

- `touched_logins(book, change)`: which logins a change can touch (conservative: a login
  touched for nothing is recomputed, found unchanged and left alone).
- `resettle_login(deals, book, account, change_id)`: one login's re-settlement, in memory.
  JM USD coverage takes from one balance in close-time order, so settling deal by deal would
  split it differently from the offline replay (which knows the change from the start): every
  settled deal of the login is undone latest first, then all are settled again in close-time
  order. Only the deals whose credits or wallet effects differ from what stands are emitted;
  None when none does.
- `too_late(at, now, window_hours)`: the correction window (events and `admin --at` alike).

Pure: the worker (agents/late.py) loads the deals, applies the result atomically and publishes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.credits import Credit, fill_ref
from engine.fill import Fill
from engine.rules import Change, RuleBook
from engine.settle import Outcome, Reason, settle
from engine.state import AccountState, DealJournal, Effects, Output, Standing

__all__ = [
    "LATE_CHANGE",
    "LoginResettlement",
    "Resettled",
    "SettledDeal",
    "resettle_login",
    "resettle_revision",
    "too_late",
    "touched_logins",
]

LATE_CHANGE = "late_change"
"""The `reason` in the basis of every credit a late change emits (reversals and recomputed)."""

_ALL_LOGINS = ("loyalty", "symbols", "account_type")  # subjects every login may depend on


def too_late(at: datetime, now: datetime, window_hours: float) -> bool:
    """Whether a change effective at `at` lies beyond the correction window at `now`.

    Such a change would re-settle fills older than the window, whose index the worker no
    longer keeps: a person decides (`too_late`).
    """
    return now - at > timedelta(hours=window_hours)


def touched_logins(book: RuleBook, change: Change) -> frozenset[int]:
    """The logins whose fills at or after `change.at` the change may settle differently.

    `book` is the rules before the change (a change never alters which IBs lie below the one
    it changes nor which accounts a client holds: only an account change does, and it names
    the login). A client or IB the book does not know yet (a registration) has no fills.
    Conservative: every version of a subject counts, not only those in force after `at`, so a
    login may be named that the change does not affect (its re-settlement finds nothing new).

    - an account: that login;
    - a client (registered, verified, moved, rebate set): the logins of its accounts;
    - an IB (plan, parent, rebate_pct, status, ...): the logins of clients whose IB chain
      includes it, through any version of the tree;
    - a plan: as a change of every IB that ever had it;
    - loyalty, symbols, account types: every login.
    """
    subject = change.subject
    if subject == "account":
        return frozenset({int(change.id)})
    if subject in _ALL_LOGINS:
        return frozenset(int(login) for login in book.subjects("account"))
    if subject in ("client", "ib") and not book.versions(subject, change.id):
        return frozenset()  # registered by this change: nothing was settled under it
    if subject == "client":
        return _logins_of_clients(book, {change.id})
    if subject == "plan":
        ibs = {i for i in book.subjects("ib") if change.id in _field_values(book, "ib", i, "plan")}
    elif subject == "ib":
        ibs = {change.id}
    else:
        return frozenset()
    below = _ibs_below(book, ibs)
    clients = {c for c in book.subjects("client") if below & _field_values(book, "client", c, "ib")}
    return _logins_of_clients(book, clients)


def _field_values(book: RuleBook, subject: str, ident: str, name: str) -> set[Any]:
    return {getattr(v, name) for v in book.versions(subject, ident) if v is not None}


def _ibs_below(book: RuleBook, ibs: set[str]) -> set[str]:
    """`ibs` and every IB that had one of them above it at some time."""
    parents = {i: _field_values(book, "ib", i, "parent") for i in book.subjects("ib")}
    below = set(ibs)
    grew = True
    while grew:  # bounded: each pass adds an IB or stops
        grew = False
        for ib, ups in parents.items():
            if ib not in below and ups & below:
                below.add(ib)
                grew = True
    return below


def _logins_of_clients(book: RuleBook, clients: set[str]) -> frozenset[int]:
    return frozenset(
        int(login)
        for login in book.subjects("account")
        if clients & _field_values(book, "account", login, "client")
    )


# -- one login's re-settlement ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettledDeal:
    """A deal of the login as it stands: its last applied fill revision and what it left.

    Attributes:
        fill: the fill of the deal's last applied revision, as received.
        revision: the revision the deal stands under (the fill's, or a re-settlement's).
        standing: what stands for the deal (None: it earned nothing).
    """

    fill: Fill
    revision: str
    standing: Standing | None


@dataclass(frozen=True, slots=True)
class Resettled:
    """A deal settled again: its reversals then its recomputed credits, under `revision`."""

    deal: SettledDeal
    revision: str
    outcome: Outcome
    reasons: tuple[Reason, ...]
    output: Output
    standing: Standing | None
    reward_deltas: tuple[tuple[str, Decimal], ...]

    @property
    def reversed_credits(self) -> tuple[Credit, ...]:
        """The credits the reversals take back (what stood): for the payout slots."""
        return self.deal.standing.credits if self.deal.standing is not None else ()


@dataclass(frozen=True, slots=True)
class LoginResettlement:
    """The login's wallet state after the re-settlement and the deals that changed."""

    account: AccountState
    deals: tuple[Resettled, ...]


def resettle_revision(standing_revision: str, change_id: str) -> str:
    """The deterministic revision of a deal re-settled for a change: the same deal and change
    always give the same credit ids, so a redo after a crash is recognised."""
    key = f"{standing_revision}|{change_id}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def resettle_login(
    deals: Sequence[SettledDeal], book: RuleBook, account: AccountState, change_id: str
) -> LoginResettlement | None:
    """Settle again the login's `deals` (all it settled at or after the change's `at`).

    `account` is the login's wallet state now (after all of `deals`). Every deal is undone,
    latest close first, then settled again in close-time order (ties: the order given) under
    `book`. Returns None when no deal's credits or wallet effects change.

    Raises:
        ConfigError: the attribution of a fill cannot be resolved under `book`.
    """
    ordered = sorted(deals, key=lambda d: d.fill.close_time)
    revisions = {id(d): resettle_revision(d.revision, change_id) for d in ordered}
    undone: dict[int, tuple[tuple[Credit, ...], tuple[tuple[str, Decimal], ...]]] = {}
    for d in reversed(ordered):
        if d.standing is None:
            continue
        # A delete of the deal under its new revision: reversals of what stands, coverage
        # returned, turnover and accrual taken back. The fill itself is settled again below.
        taking_back = replace(d.fill, event="delete", revision=revisions[id(d)])
        s = settle(taking_back, book, account, DealJournal({}, d.standing))
        account = s.account
        undone[id(d)] = s.credits, s.reward_deltas
    changed: list[Resettled] = []
    for d in ordered:
        fill = replace(d.fill, revision=revisions[id(d)])
        s = settle(fill, book, account, None)
        account = s.account
        if _same(d.standing, s.standing):
            continue  # the deal stands as it was: no reversal, no new credit
        reversals, taken_back = undone.get(id(d), ((), ()))
        ref = fill_ref(fill)
        credits = (*(_late(c, ref) for c in reversals), *(_late(c, ref) for c in s.credits))
        standing = s.standing
        if standing is not None:
            fresh = tuple(c for c in credits if c.kind != "reversal")
            standing = Standing(standing.revision, fresh, standing.effects)
        changed.append(
            Resettled(
                d,
                fill.revision,
                "credited" if credits else s.outcome,
                s.reasons,
                Output(credits, s.output.events),
                standing,
                (*taken_back, *s.reward_deltas),
            )
        )
    if not changed:
        return None
    return LoginResettlement(account, tuple(changed))


def _late(credit: Credit, ref: dict[str, Any]) -> Credit:
    """The credit with reason late_change in its basis, naming the fill as it stands."""
    return replace(credit, fill=ref, basis={**credit.basis, "reason": LATE_CHANGE})


def _same(before: Standing | None, after: Standing | None) -> bool:
    """Equal credits (by kind, beneficiary, amount, currency) and equal wallet effects.

    The basis is not compared: the money is (the net per deal is the goal), and a basis that
    differs only in its text would otherwise re-settle every deal an engine upgrade touched.
    """
    return _money(before) == _money(after) and _effects(before) == _effects(after)


def _money(standing: Standing | None) -> list[tuple[str, str, str, Decimal, str]]:
    credits: Iterable[Credit] = standing.credits if standing is not None else ()
    return sorted(
        (c.kind, c.beneficiary_type, c.beneficiary_id, c.amount, c.currency) for c in credits
    )


def _effects(standing: Standing | None) -> Effects:
    return standing.effects if standing is not None else Effects()

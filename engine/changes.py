"""The attribution changes (SPEC 3): one builder per kind of change, shared by every source.

`rebate-engine admin` and back-office events (engine/crm.py) call these builders, so a
command and the event of the same name give the same effective-dated `Change`; the seed
writes the same changes directly (its items are these changes, checked together when it
loads). Each builder checks the change's references against the rules in force at its
effective time `at` and never mutates the RuleBook. What a change does to the rest of the
timeline (a cycle or an unresolvable account at a later change instant, a cancellation
before a scheduled resume) shows only when the whole log is folded, which the caller that
holds the log does (admin's check, `RuleBook.extend`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from engine.rules import Change, Client, Ib, RuleBook

__all__ = [
    "REFUSAL_REASONS",
    "ChangeRefused",
    "add_account",
    "add_client",
    "add_ib",
    "change_account",
    "change_ib",
    "ib_of_code",
    "move_client",
    "set_rebate",
    "verify_client",
]

# Bounded: back-office events are dead-lettered with these as their reason.
REFUSAL_REASONS = (
    "unknown_client",
    "unknown_ib",
    "unknown_login",
    "unknown_plan",
    "already_exists",
    "cycle",
    "revived_rebate",
)


class ChangeRefused(ValueError):
    """A change that contradicts the rules in force at its `at`: nothing is to be written.

    Attributes:
        reason: one of REFUSAL_REASONS.
        field: the builder argument at fault (`client`, `ib`, `parent`, `plan`, `login`, ...).
    """

    def __init__(self, reason: str, message: str, field: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


# -- IBs ---------------------------------------------------------------------------------------


def ib_of_code(book: RuleBook, code: str, at: datetime) -> Ib | None:
    """The IB whose partner code is `code` at `at` (an IB given none has its id as its code).

    A scan over the IBs: back-office registrations are rare next to fills, and a code index
    would have to follow every change of the book.
    """
    for ident in book.subjects("ib"):
        ib: Ib | None = book.get("ib", ident, at)
        if ib is not None and ib.partner_code == code:
            return ib
    return None


def add_ib(book: RuleBook, at: datetime, ib: str, fields: Mapping[str, Any]) -> Change:
    """A new IB from `at` on; `fields` as a seed `ibs` item (plan, parent, rebate_pct, ...)."""
    _absent(book, "ib", ib, at, "ib")
    _code_free(book, ib, str(fields.get("partner_code") or ib), at)
    return _ib_change(book, at, ib, fields)


def change_ib(book: RuleBook, at: datetime, ib: str, fields: Mapping[str, Any]) -> Change:
    """An IB's plan, parent (None: a top IB), rebate_pct, status, partner code, ... from `at`."""
    _need(book, "ib", ib, at, "ib")
    if fields.get("partner_code") is not None:
        _code_free(book, ib, str(fields["partner_code"]), at)
    return _ib_change(book, at, ib, fields)


def _code_free(book: RuleBook, ib: str, code: str, at: datetime) -> None:
    """A partner code names one IB: refuse one that another IB holds at `at`."""
    holder = ib_of_code(book, code, at)
    if holder is not None and holder.id != ib:
        raise ChangeRefused(
            "already_exists",
            f"partner code {code!r} already belongs to IB {holder.id!r} at {_z(at)}",
            "partner_code",
        )


def _ib_change(book: RuleBook, at: datetime, ib: str, fields: Mapping[str, Any]) -> Change:
    if fields.get("plan") is not None:
        _need(book, "plan", str(fields["plan"]), at, "plan")
    parent = fields.get("parent")
    if parent is not None:
        _need(book, "ib", str(parent), at, "parent")
        cycle = _cycle_through(book, ib, str(parent), at)
        if cycle:
            raise ChangeRefused("cycle", f"would create an IB cycle at {_z(at)}: {cycle}", "parent")
    return Change(at, "ib", ib, dict(fields))


def _cycle_through(book: RuleBook, ib: str, parent: str, at: datetime) -> str | None:
    """`ib -> parent -> ... -> ib` when `ib` is `parent` or one of its ancestors at `at`."""
    chain = [ib]
    current: str | None = parent
    while current is not None:
        chain.append(current)
        if current == ib:
            return " -> ".join(chain)
        if current in chain[:-1]:
            return None  # a cycle above that does not pass through `ib`: not this change's
        node: Ib | None = book.get("ib", current, at)
        current = node.parent if node is not None else None
    return None


# -- clients -----------------------------------------------------------------------------------


def add_client(
    book: RuleBook, at: datetime, client: str, *, verified: bool, ib: str | None = None
) -> Change:
    """A new client from `at` on, referred by `ib` or direct (None)."""
    _absent(book, "client", client, at, "client")
    fields: dict[str, Any] = {"verified": verified}
    if ib is not None:
        _need(book, "ib", ib, at, "ib")
        fields["ib"] = ib
    return Change(at, "client", client, fields)


def verify_client(book: RuleBook, at: datetime, client: str) -> Change:
    _need(book, "client", client, at, "client")
    return Change(at, "client", client, {"verified": True})


def move_client(book: RuleBook, at: datetime, client: str, ib: str) -> Change:
    """The client's IB from `at` on (its rebate override under the old IB ends: SPEC 3 r2)."""
    _need(book, "client", client, at, "client")
    _need(book, "ib", ib, at, "ib")
    return Change(at, "client", client, {"ib": ib})


def set_rebate(
    book: RuleBook,
    at: datetime,
    client: str,
    *,
    pct: Decimal | None = None,
    status: str | None = None,
) -> Change:
    """The client's rebate override pct and/or its status (active|suspended|cancelled)."""
    current: Client = _need(book, "client", client, at, "client")
    if status not in (None, "cancelled") and current.rebate_status == "cancelled":
        raise ChangeRefused(
            "revived_rebate",
            f"client {client}: a cancelled rebate cannot be reactivated under the same IB "
            f"({current.ib}) at {_z(at)}",
            "status",
        )
    fields: dict[str, Any] = {}
    if pct is not None:
        fields["rebate_pct"] = pct
    if status is not None:
        fields["rebate_status"] = status
    return Change(at, "client", client, fields)


# -- accounts ----------------------------------------------------------------------------------


def add_account(
    book: RuleBook, at: datetime, login: int, client: str, account_type: str, *, live: bool
) -> Change:
    _absent(book, "account", str(login), at, "login")
    _need(book, "client", client, at, "client")
    return Change(at, "account", str(login), {"client": client, "type": account_type, "live": live})


def change_account(book: RuleBook, at: datetime, login: int, fields: Mapping[str, Any]) -> Change:
    """An account's client, type or live flag from `at` on."""
    _need(book, "account", str(login), at, "login")
    if "client" in fields:
        _need(book, "client", str(fields["client"]), at, "client")
    return Change(at, "account", str(login), dict(fields))


# -- references --------------------------------------------------------------------------------

_Subject = Literal["account", "client", "ib", "plan"]


def _need(book: RuleBook, subject: _Subject, ident: str, at: datetime, field: str) -> Any:
    value = book.get(subject, ident, at)
    if value is None:
        what = _noun(subject)
        raise ChangeRefused(f"unknown_{what}", f"unknown {what} {ident!r} at {_z(at)}", field)
    return value


def _absent(book: RuleBook, subject: _Subject, ident: str, at: datetime, field: str) -> None:
    if book.get(subject, ident, at) is not None:
        raise ChangeRefused(
            "already_exists", f"{_noun(subject)} {ident!r} already exists at {_z(at)}", field
        )


def _noun(subject: str) -> str:
    return "login" if subject == "account" else subject


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")

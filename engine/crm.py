"""crm-event.v1: back-office events turned into attribution changes (SPEC 3 r2, "Live attribution").

`decode_event(raw)` parses one event and checks it against schemas/crm-event.v1.json;
`check_event(event, book)` turns it into the effective-dated `Change` that the admin command of
that name makes (through the same builders, engine/changes.py), checked against the rules in
force at the event's `at`, without touching the book. Applying it is the caller's:
`book.extend([checked.change])` offline, the rules log in Redis in the worker.

Partner codes: `ref_code` and `parent_code` name an IB by its partner code (`?ref=32071`), as
the IBs in force at `at` define them. An unknown or absent `ref_code` makes a direct client,
which is no error but is reported (`CheckedEvent.direct_client`) so that it can be counted;
the code of an IB that is not active is an error (`inactive_ib`). Other contradictions raise
`CrmEventError` with a bounded `reason` (the dead-letter reason) and a message that names the
event's field.

Idempotency by `event_id` is the caller's: this module keeps no memory of the events it has
seen. A consumer records the ids it has handled and skips a redelivered one;
`apply_event_lines` (the offline replay) does so within its input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from engine import changes
from engine.changes import REFUSAL_REASONS, ChangeRefused
from engine.errors import ConfigError
from engine.late import too_late
from engine.replay import Problem
from engine.rules import Change, Ib, RuleBook
from engine.seed import parse_time

__all__ = [
    "DIRECT_CLIENT_REASONS",
    "EVENT_TYPES",
    "REASONS",
    "AppliedEvents",
    "CheckedEvent",
    "CrmEvent",
    "CrmEventError",
    "apply_event_lines",
    "check_event",
    "check_folds",
    "check_window",
    "decode_event",
]

EVENT_TYPES = (
    "ib_registered",
    "client_registered",
    "client_verified",
    "account_opened",
    "account_changed",
    "client_moved",
    "rebate_set",
    "ib_changed",
)
# Closed set of dead-letter reasons for crm-events.v1.dlq: metric label values come from here.
REASONS = (
    "malformed_json",
    "schema",
    "unknown_type",
    *REFUSAL_REASONS,
    "inactive_ib",
    "too_late",
)
# Why a registration made a direct client (a bounded label for the counter).
DIRECT_CLIENT_REASONS = ("no_ref_code", "unknown_ref_code")


class CrmEventError(ValueError):
    """A malformed or contradicting back-office event.

    Attributes:
        reason: one of REASONS (bounded: the dead-letter reason and a metric label).
        field: the event's field at fault (`$.client` style for schema errors), when known.
    """

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """One schema-valid event; `body` is the JSON object as received."""

    event_id: str
    type: str
    at: datetime
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CheckedEvent:
    """An event and the change it makes; `direct_client` says why a registration has no IB."""

    event: CrmEvent
    change: Change
    direct_client: str | None = None


def decode_event(raw: bytes) -> CrmEvent:
    """Parse and validate one crm-event.v1 message.

    Raises:
        CrmEventError: `malformed_json`, `unknown_type` or `schema`.
    """
    from schemas import SchemaError, validate  # noqa: PLC0415 - schemas imports jsonschema lazily

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CrmEventError("malformed_json", f"not JSON: {exc}") from None
    kind = data.get("type") if isinstance(data, dict) else None
    if isinstance(kind, str) and kind not in EVENT_TYPES:
        raise CrmEventError(
            "unknown_type",
            f"type: unknown event type {kind!r} (one of {', '.join(EVENT_TYPES)})",
            "type",
        )
    try:
        validate("crm-event.v1", data)
    except SchemaError as exc:
        raise CrmEventError("schema", str(exc), exc.path) from None
    return CrmEvent(data["event_id"], data["type"], parse_time(data["at"]), data)


def check_event(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    """The change `event` makes, checked against the rules in force at its `at`.

    The book is only read. Whether the change contradicts changes effective after `at` shows
    when it is folded into the book (`RuleBook.extend` refuses a revived rebate and leaves the
    book unchanged).

    Raises:
        CrmEventError: an unknown IB, client, login or plan; a registration of something that
            exists; a cycle; a revived rebate; the partner code of an inactive IB.
    """
    try:
        return _CHECKS[event.type](event, book)
    except ChangeRefused as exc:
        name = _EVENT_FIELDS.get(exc.field, exc.field)
        raise CrmEventError(exc.reason, f"{event.type}.{name}: {exc}", name) from None


def check_window(event: CrmEvent, now: datetime, window_hours: int) -> None:
    """Refuse a change effective more than `window_hours` before `now` (`too_late`).

    Such a change would re-settle fills older than the correction window: a person decides.
    """
    if too_late(event.at, now, window_hours):
        raise CrmEventError(
            "too_late",
            f"at: {event.body['at']} is more than {window_hours} h before {_z(now)} "
            "(correction_window_hours)",
            "at",
        )


# -- one check per event type ------------------------------------------------------------------

# Builder arguments (engine/changes.py) whose event field has another name.
_EVENT_FIELDS = {"parent": "parent_code", "type": "account_type"}


def _ib_registered(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    body = event.body
    fields: dict[str, Any] = {"plan": body["plan"], "partner_code": body["partner_code"]}
    parent = _parent(event, book)
    if parent is not None:
        fields["parent"] = parent
    if body.get("rebate_pct") is not None:
        fields["rebate_pct"] = Decimal(body["rebate_pct"])
    if body.get("client") is not None:
        fields["client"] = body["client"]
    return CheckedEvent(event, changes.add_ib(book, event.at, body["ib"], fields))


def _client_registered(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    body = event.body
    code = body.get("ref_code") or None  # "" is how some back offices say "no referrer"
    ib = None if code is None else _ib_of_code(event, book, code, "ref_code")
    change = changes.add_client(
        book, event.at, body["client"], verified=body["verified"], ib=ib.id if ib else None
    )
    direct = None if ib else ("no_ref_code" if code is None else "unknown_ref_code")
    return CheckedEvent(event, change, direct)


def _client_verified(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    return CheckedEvent(event, changes.verify_client(book, event.at, event.body["client"]))


def _account_opened(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    # The currency is not part of the attribution: every fill carries its account's currency.
    body = event.body
    change = changes.add_account(
        book, event.at, body["login"], body["client"], body["account_type"], live=body["live"]
    )
    return CheckedEvent(event, change)


def _account_changed(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    body = event.body
    fields = {
        name: body[key] for key, name in (("account_type", "type"), ("live", "live")) if key in body
    }
    return CheckedEvent(event, changes.change_account(book, event.at, body["login"], fields))


def _client_moved(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    body = event.body
    return CheckedEvent(event, changes.move_client(book, event.at, body["client"], body["ib"]))


def _rebate_set(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    body = event.body
    pct = None if body.get("pct") is None else Decimal(body["pct"])
    change = changes.set_rebate(book, event.at, body["client"], pct=pct, status=body.get("status"))
    return CheckedEvent(event, change)


def _ib_changed(event: CrmEvent, book: RuleBook) -> CheckedEvent:
    body = event.body
    fields: dict[str, Any] = {}
    if body.get("plan") is not None:
        fields["plan"] = body["plan"]
    if "parent_code" in body:  # null: the IB becomes a top IB
        fields["parent"] = _parent(event, book)
    if body.get("rebate_pct") is not None:
        fields["rebate_pct"] = Decimal(body["rebate_pct"])
    if body.get("status") is not None:
        fields["status"] = body["status"]
    return CheckedEvent(event, changes.change_ib(book, event.at, body["ib"], fields))


_CHECKS: dict[str, Callable[[CrmEvent, RuleBook], CheckedEvent]] = {
    "ib_registered": _ib_registered,
    "client_registered": _client_registered,
    "client_verified": _client_verified,
    "account_opened": _account_opened,
    "account_changed": _account_changed,
    "client_moved": _client_moved,
    "rebate_set": _rebate_set,
    "ib_changed": _ib_changed,
}


def _parent(event: CrmEvent, book: RuleBook) -> str | None:
    """The IB named by `parent_code` (None when absent or null); an unknown code is an error."""
    code = event.body.get("parent_code")
    if code is None:
        return None
    ib = _ib_of_code(event, book, code, "parent_code")
    if ib is None:
        raise CrmEventError(
            "unknown_ib",
            f"{event.type}.parent_code: no IB has partner code {code!r} at {_z(event.at)}",
            "parent_code",
        )
    return ib.id


def _ib_of_code(event: CrmEvent, book: RuleBook, code: str, name: str) -> Ib | None:
    ib = changes.ib_of_code(book, code, event.at)
    if ib is not None and ib.status != "active":
        raise CrmEventError(
            "inactive_ib",
            f"{event.type}.{name}: partner code {code!r} is IB {ib.id!r}'s, "
            f"{ib.status} at {_z(event.at)}",
            name,
        )
    return ib


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


# -- offline: a file of events into a RuleBook -------------------------------------------------


@dataclass
class AppliedEvents:
    """What `apply_event_lines` did: counts, direct clients by reason, the refused events."""

    applied: int = 0
    duplicates: int = 0
    direct_clients: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)


def apply_event_lines(lines: Iterable[tuple[str, int, bytes]], book: RuleBook) -> AppliedEvents:
    """Apply (source, line number, raw JSON) events to `book` in the order of their `at`.

    The events are effective-dated, so applying them all before the fills are replayed gives
    the credits they would have given had they arrived on time. Ties keep the input order; a
    repeated `event_id` is applied once. A refused event is reported and skipped.
    """
    result = AppliedEvents()
    decoded: list[tuple[CrmEvent, str, int]] = []
    for source, number, raw in lines:
        if not raw.strip():
            continue
        try:
            decoded.append((decode_event(raw), source, number))
        except CrmEventError as exc:
            result.problems.append(Problem(source, number, exc.reason, str(exc)))
    decoded.sort(key=lambda item: item[0].at)  # stable: ties stay in input order
    seen: set[str] = set()
    for event, source, number in decoded:
        if event.event_id in seen:
            result.duplicates += 1
            continue
        seen.add(event.event_id)
        try:
            checked = check_event(event, book)
            _extend(book, checked)
        except CrmEventError as exc:
            result.problems.append(Problem(source, number, exc.reason, str(exc)))
            continue
        result.applied += 1
        if checked.direct_client:
            result.direct_clients[checked.direct_client] += 1
    return result


def _extend(book: RuleBook, checked: CheckedEvent) -> None:
    check_folds(checked, book)
    book.extend([checked.change])


def check_folds(checked: CheckedEvent, book: RuleBook) -> None:
    """Refuse a change that the book could not fold, leaving the book as it is.

    Raises:
        CrmEventError: `revived_rebate`, the only fold error: a change in the book effective
            after the event's `at` would now revive a cancelled rebate.
    """
    try:
        book.check_extend([checked.change])
    except ConfigError as exc:
        raise CrmEventError("revived_rebate", f"{checked.event.type}: {exc}") from None

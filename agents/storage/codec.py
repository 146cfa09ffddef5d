"""Wire formats of what the store keeps: wallet state, standing credits, outputs, rule changes.

Decimals travel as strings, times as ISO-8601 Z; the engine's types stay free of I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from engine import __version__
from engine.credits import Credit, WalletEvent
from engine.fill import Fill, parse_fill
from engine.rules import Change
from engine.settle import Outcome, Reason
from engine.state import AccountState, Bonus, Effects, JmAllocation, Output, Standing

__all__ = [
    "JournalEntry",
    "credit_json",
    "decode_account",
    "decode_change",
    "decode_journal_entry",
    "decode_output",
    "decode_standing",
    "encode_account",
    "encode_change",
    "encode_journal_entry",
    "encode_output",
    "encode_standing",
    "iso_z",
]


def iso_z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso_z(value)
    raise TypeError(type(value).__name__)


def encode_account(state: AccountState) -> str:
    return orjson.dumps(
        {
            "allocations": [
                [a.allocation_id, iso_z(a.allocated_at), str(a.remaining)]
                for a in state.allocations
            ],
            "bonuses": [
                [
                    b.bonus_id,
                    str(b.amount_usd),
                    iso_z(b.granted_at),
                    str(b.turnover_lots),
                    b.unlocked,
                ]
                for b in state.bonuses
            ],
        }
    ).decode()


def decode_account(login: int, raw: bytes | str | None) -> AccountState:
    if not raw:
        return AccountState(login)
    data = orjson.loads(raw)
    return AccountState(
        login,
        tuple(
            JmAllocation(i, datetime.fromisoformat(at), Decimal(r))
            for i, at, r in data["allocations"]
        ),
        tuple(
            Bonus(i, Decimal(a), datetime.fromisoformat(g), Decimal(t), bool(u))
            for i, a, g, t, u in data["bonuses"]
        ),
    )


def credit_json(credit: Credit) -> bytes:
    """A credit.v1 message: what credits.v1 carries and what the journal stores."""
    return orjson.dumps(credit.to_dict(__version__))


def _credits_array(credits: tuple[Credit, ...], encoded: Mapping[str, bytes]) -> bytes:
    # Credits already serialized for this fill (`encoded`, by credit_id) are reused: on the
    # hot path each credit is serialized once for the journal, the standing and the topic.
    return b"[" + b",".join(encoded.get(c.credit_id) or credit_json(c) for c in credits) + b"]"


def encode_output(output: Output, encoded: Mapping[str, bytes] | None = None) -> str:
    """{"credits": [...], "events": [...]}: byte for byte what orjson.dumps of it gives."""
    events = orjson.dumps([e.to_dict() for e in output.events])
    credits = _credits_array(output.credits, encoded or {})
    return (b'{"credits":' + credits + b',"events":' + events + b"}").decode()


def decode_output(raw: bytes | str) -> tuple[Output, dict[str, bytes]]:
    """A stored output, and its credits' stored credit.v1 bytes by credit_id.

    The bytes are what a redelivery publishes: orjson gives back the same bytes for a value
    it parsed from its own output, whereas re-encoding the Credit objects would stamp the
    running engine's version over the one that was published then.
    """
    data = orjson.loads(raw)
    stored = {c["credit_id"]: orjson.dumps(c) for c in data["credits"]}
    output = Output(
        tuple(Credit.from_dict(c) for c in data["credits"]),
        tuple(
            WalletEvent(
                e["event_id"],
                e["event"],
                {k: v for k, v in e.items() if k not in ("schema", "event_id", "event")},
            )
            for e in data["events"]
        ),
    )
    return output, stored


def encode_standing(standing: Standing, encoded: Mapping[str, bytes] | None = None) -> str:
    e = standing.effects
    effects = orjson.dumps(
        {
            "coverage": [[i, str(a)] for i, a in e.coverage],
            "accrual_client": e.accrual_client,
            "accrual": str(e.accrual),
            "bonus_lots": [[i, str(a)] for i, a in e.bonus_lots],
        }
    )
    credits = _credits_array(standing.credits, encoded or {})
    return (
        b'{"rev":' + orjson.dumps(standing.revision) + b',"credits":' + credits
        + b',"effects":' + effects + b"}"
    ).decode()  # fmt: skip


def decode_standing(raw: bytes | str | None) -> Standing | None:
    if not raw:
        return None
    data = orjson.loads(raw)
    e = data["effects"]
    return Standing(
        data["rev"],
        tuple(Credit.from_dict(c) for c in data["credits"]),
        Effects(
            tuple((i, Decimal(a)) for i, a in e["coverage"]),
            e["accrual_client"],
            Decimal(e["accrual"]),
            tuple((i, Decimal(a)) for i, a in e["bonus_lots"]),
        ),
    )


def encode_change(change: Change) -> bytes:
    return orjson.dumps(
        {
            "at": iso_z(change.at),
            "subject": change.subject,
            "id": change.id,
            "fields": change.fields,
        },
        default=_default,
    )


def decode_change(raw: bytes | str) -> Change:
    data = orjson.loads(raw)
    return Change(datetime.fromisoformat(data["at"]), data["subject"], data["id"], data["fields"])


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """What the deal journal keeps of one applied revision besides its output (SPEC 4.3 [r2]):
    the fill itself, its outcome and reasons, and the bonus turnover it counted, so that
    `explain --live` tells it with the same step builders as the offline form."""

    revision: str
    fill: Fill
    outcome: Outcome
    reasons: tuple[Reason, ...]
    bonus_lots: tuple[tuple[str, Decimal], ...]


def encode_journal_entry(
    fill_bytes: bytes,
    revision: str,
    outcome: Outcome,
    reasons: tuple[Reason, ...],
    bonus_lots: tuple[tuple[str, Decimal], ...],
) -> str:
    """The entry with the fill.v1 bytes as received, spliced in unparsed (they were decoded
    as one JSON object already): no second serialization on the hot path."""
    head = orjson.dumps(
        {
            "r": revision,
            "outcome": outcome,
            "reasons": reasons,
            "bonus_lots": [[i, str(lots)] for i, lots in bonus_lots],
        }
    )
    return (head[:-1] + b',"fill":' + fill_bytes.strip() + b"}").decode()


def decode_journal_entry(raw: bytes | str) -> JournalEntry:
    data = orjson.loads(raw)
    return JournalEntry(
        data["r"],
        parse_fill(data["fill"]),
        data["outcome"],
        tuple(data["reasons"]),
        tuple((i, Decimal(lots)) for i, lots in data["bonus_lots"]),
    )

"""credit.v1 records (SPEC 5): what the engine emits, with deterministic ids and a basis."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

from engine.fill import Fill
from engine.money import fmt

__all__ = ["KINDS", "Credit", "Kind", "WalletEvent", "credit_id", "fill_ref"]

Kind = Literal[
    "ib_commission",
    "client_rebate",
    "ib_override",
    "jm_coverage",
    "loyalty_accrual",
    "reversal",
    "tier_bonus",
]
KINDS: tuple[Kind, ...] = get_args(Kind)


def credit_id(fill: Fill, kind: Kind, beneficiary: str, level: int, reverses: str | None) -> str:
    """Deterministic: the same fill revision always yields the same ids, so wallets can dedupe."""
    key = f"{fill.server}|{fill.deal}|{fill.revision}|{kind}|{beneficiary}|{level}|{reverses or ''}"
    return "cr_" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def fill_ref(fill: Fill) -> dict[str, Any]:
    """The source-fill block every credit carries."""
    return {
        "server": fill.server,
        "deal": fill.deal,
        "position": fill.position,
        "login": fill.login,
        "symbol": fill.symbol,
        "lots": fmt(fill.lots),
        "close_time": fill.close_time_text,
        "event": fill.event,
        "revision": fill.revision,
    }


@dataclass(frozen=True, slots=True)
class Credit:
    """One credit. `basis` holds only strings and ints: it is written out as it is."""

    credit_id: str
    kind: Kind
    beneficiary_type: str  # ib | client | account
    beneficiary_id: str
    amount: Decimal
    currency: str  # USD | JMUSD
    fill: Mapping[str, Any]
    basis: Mapping[str, Any]
    reverses: str | None = None

    @property
    def level(self) -> int:
        level: int = self.basis["level"]
        return level

    def to_dict(self, engine_version: str) -> dict[str, Any]:
        return {
            "schema": "credit.v1",
            "credit_id": self.credit_id,
            "kind": self.kind,
            "beneficiary": {"type": self.beneficiary_type, "id": self.beneficiary_id},
            "amount": f"{self.amount:.2f}",
            "currency": self.currency,
            "fill": self.fill,
            "basis": self.basis,
            "reverses": self.reverses,
            "engine_version": engine_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Credit:
        beneficiary = data["beneficiary"]
        return cls(
            credit_id=data["credit_id"],
            kind=data["kind"],
            beneficiary_type=beneficiary["type"],
            beneficiary_id=beneficiary["id"],
            amount=Decimal(data["amount"]),
            currency=data["currency"],
            fill=data["fill"],
            basis=data["basis"],
            reverses=data.get("reverses"),
        )


@dataclass(frozen=True, slots=True)
class WalletEvent:
    """A wallet-event.v1 record (bonus unlocked, JM allocation answered, bonus granted)."""

    event_id: str
    event: str
    payload: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "wallet-event.v1",
            "event_id": self.event_id,
            "event": self.event,
            **self.payload,
        }

    @staticmethod
    def make_id(*parts: object) -> str:
        key = "|".join(str(p) for p in parts)
        return "ev_" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

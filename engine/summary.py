"""Totals of a replay or a run, per credit kind, IB and client (from credit.v1 dicts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.money import ZERO

__all__ = ["Summary"]


@dataclass
class Summary:
    fills: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, reason)
    dead_letters: Counter[str] = field(default_factory=Counter)
    credits: int = 0
    by_kind: dict[tuple[str, str], tuple[int, Decimal]] = field(default_factory=dict)
    by_ib: dict[str, Decimal] = field(default_factory=dict)
    by_client: dict[str, Decimal] = field(default_factory=dict)

    def add_outcome(self, outcome: str, reasons: tuple[str, ...] = ()) -> None:
        """Count one fill; each of its reasons (why it earned less than its plan) once."""
        self.fills += 1
        self.outcomes[outcome] += 1
        for reason in reasons:
            self.reasons[(outcome, reason)] += 1

    def by_reason(self) -> Counter[str]:
        """Fills per reason, over every outcome (a fill with two reasons counts under both)."""
        counts: Counter[str] = Counter()
        for (_, reason), n in self.reasons.items():
            counts[reason] += n
        return counts

    def add_dead_letter(self, reason: str) -> None:
        self.fills += 1
        self.outcomes["dead_lettered"] += 1
        self.dead_letters[reason] += 1
        self.reasons[("dead_lettered", reason)] += 1

    def add_credit(self, credit: Mapping[str, Any]) -> None:
        amount = Decimal(credit["amount"])
        kind = credit["kind"]
        if kind == "reversal":
            kind = f"reversal of {credit['basis'].get('reversed_kind', '?')}"
        key = (kind, credit["currency"])
        count, total = self.by_kind.get(key, (0, ZERO))
        self.by_kind[key] = (count + 1, total + amount)
        self.credits += 1
        beneficiary = credit["beneficiary"]
        if credit["currency"] == "USD":
            table = {"ib": self.by_ib, "client": self.by_client}.get(beneficiary["type"])
            if table is not None:
                table[beneficiary["id"]] = table.get(beneficiary["id"], ZERO) + amount

    def totals(self) -> dict[str, Decimal]:
        """Net amount per currency over all credits."""
        out: dict[str, Decimal] = {}
        for (_, currency), (_, total) in self.by_kind.items():
            out[currency] = out.get(currency, ZERO) + total
        return out

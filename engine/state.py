"""Per-account wallet state and per-deal journal: what settling a fill reads and changes.

The Redis store (agents/storage/store.py) persists exactly these values; the offline ledger
keeps them in memory. Both apply a fill revision's change in one step, so the two paths agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from engine.credits import Credit, WalletEvent
from engine.money import ZERO

__all__ = ["AccountState", "Bonus", "DealJournal", "Effects", "JmAllocation", "Output", "Standing"]


@dataclass(frozen=True, slots=True)
class JmAllocation:
    """JM USD moved from a client's reward wallet to cover one login's trading costs."""

    allocation_id: str
    allocated_at: datetime
    remaining: Decimal


@dataclass(frozen=True, slots=True)
class Bonus:
    """A deposit bonus with its turnover requirement: amount_usd / 2 lots (SPEC 4.8)."""

    bonus_id: str
    amount_usd: Decimal
    granted_at: datetime
    turnover_lots: Decimal = ZERO
    unlocked: bool = False

    @property
    def required_lots(self) -> Decimal:
        return self.amount_usd / 2


@dataclass(frozen=True, slots=True)
class AccountState:
    login: int
    allocations: tuple[JmAllocation, ...] = ()
    bonuses: tuple[Bonus, ...] = ()

    @property
    def jm_balance(self) -> Decimal:
        return sum((a.remaining for a in self.allocations), ZERO)


@dataclass(frozen=True, slots=True)
class Effects:
    """What a credited revision did to wallet state, so a reversal can undo exactly that."""

    coverage: tuple[tuple[str, Decimal], ...] = ()  # (allocation_id, JM USD taken)
    accrual_client: str | None = None
    accrual: Decimal = ZERO
    bonus_lots: tuple[tuple[str, Decimal], ...] = ()  # (bonus_id, lots added)


@dataclass(frozen=True, slots=True)
class Standing:
    """The credits currently in force for a deal (the last non-deleted revision's)."""

    revision: str
    credits: tuple[Credit, ...]
    effects: Effects


@dataclass(frozen=True, slots=True)
class Output:
    """What processing one revision emitted; returned again, unchanged, on re-delivery."""

    credits: tuple[Credit, ...] = ()
    events: tuple[WalletEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class DealJournal:
    """Every processed revision of one deal (server, deal), what stands now and, when the
    bridge sends one, the deal's current `seq` [r2]."""

    processed: Mapping[str, Output] = field(default_factory=dict)
    standing: Standing | None = None
    seq: int | None = None

    def record(
        self, revision: str, output: Output, standing: Standing | None, seq: int | None
    ) -> DealJournal:
        """The journal after applying one revision (SPEC 7 [r2]: every revision is recorded,
        whether it earned or not, so a redelivery always finds itself)."""
        return DealJournal(
            {**self.processed, revision: output},
            standing,
            self.seq if seq is None else seq,
        )

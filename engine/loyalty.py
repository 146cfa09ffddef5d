"""SPEC 4.6-4.7: JM USD coverage of trading costs and loyalty accrual."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from engine.money import ZERO, pct_of, round_cents
from engine.state import AccountState, JmAllocation

__all__ = ["Coverage", "accrual", "take_coverage"]


@dataclass(frozen=True, slots=True)
class Coverage:
    """One fill's JM USD coverage: what was wanted, what the balance allowed, and where from."""

    wanted: Decimal
    covered: Decimal
    taken: tuple[tuple[str, Decimal], ...]
    """JM USD taken per allocation id."""
    balance_before: Decimal
    """The JM balance this position could draw on (allocated at or before its open)."""

    @property
    def balance_after(self) -> Decimal:
        return self.balance_before - self.covered


def take_coverage(
    state: AccountState, cost_usd: Decimal, coverage_pct: Decimal, opened_at: datetime
) -> tuple[Coverage, AccountState]:
    """Cover coverage_pct of the cost from JM USD allocated before the position opened.

    Returns (the coverage, state after). Allocations are used oldest first; a position
    opened before an allocation cannot draw on it, so coverage is never retroactive. When the
    balance runs out mid-trade the cover is what is left.
    """
    wanted = round_cents(pct_of(cost_usd, coverage_pct))
    balance = sum(
        (a.remaining for a in state.allocations if a.allocated_at <= opened_at and a.remaining > 0),
        ZERO,
    )
    if wanted <= 0 or not balance:
        return Coverage(wanted, ZERO, (), balance), state
    still = wanted
    taken: list[tuple[str, Decimal]] = []
    allocations: list[JmAllocation] = []
    for allocation in state.allocations:
        if still > 0 and allocation.remaining > 0 and allocation.allocated_at <= opened_at:
            amount = min(still, allocation.remaining)
            still -= amount
            taken.append((allocation.allocation_id, amount))
            allocation = replace(allocation, remaining=allocation.remaining - amount)
        allocations.append(allocation)
    return (
        Coverage(wanted, wanted - still, tuple(taken), balance),
        replace(state, allocations=tuple(allocations)),
    )


def accrual(cost_usd: Decimal, covered: Decimal, accrual_pct: Decimal) -> Decimal:
    """accrual_pct x (cost_usd - coverage), rounded: JM USD for the client's reward wallet."""
    return round_cents(pct_of(cost_usd - covered, accrual_pct))

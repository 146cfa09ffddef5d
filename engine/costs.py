"""SPEC 4.1: lots, spread cost, commission paid and the USD cost of a fill."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.fill import Fill
from engine.money import ZERO

__all__ = ["Costs", "costs_of"]


@dataclass(frozen=True, slots=True)
class Costs:
    lots: Decimal
    spread_cost: Decimal
    """spread_points x point_value x lots, in account currency (0 when either is missing)."""
    commission_paid: Decimal
    """|commission|, in account currency."""
    usd_rate: Decimal

    @property
    def spread_cost_usd(self) -> Decimal:
        return self.spread_cost * self.usd_rate

    @property
    def commission_usd(self) -> Decimal:
        return self.commission_paid * self.usd_rate

    @property
    def cost_usd(self) -> Decimal:
        """(spread_cost + commission_paid) x usd_rate: what the client paid to trade."""
        return (self.spread_cost + self.commission_paid) * self.usd_rate


def costs_of(fill: Fill) -> Costs:
    lots = fill.lots
    if fill.spread_points is None or fill.point_value is None:
        spread = ZERO
    else:
        spread = fill.spread_points * fill.point_value * lots
    return Costs(lots, spread, abs(fill.commission), fill.usd_rate)

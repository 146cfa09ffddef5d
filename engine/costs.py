"""SPEC 4.1: lots, standard lots, spread cost, commission paid and the USD cost of a fill."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.fill import Fill
from engine.money import ZERO

__all__ = ["Costs", "costs_of"]

_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Costs:
    lots: Decimal
    spread_cost: Decimal
    """spread_points x point_value x lots, in account currency (0 when either is missing)."""
    commission_paid: Decimal
    """max(0, -commission), in account currency: a positive commission is a refund, not a cost."""
    usd_rate: Decimal
    lot_scale: Decimal = _ONE
    """Standard lots per lot of the account (0.01 for cent accounts, SPEC 3 r2)."""

    @property
    def std_lots(self) -> Decimal:
        """lots x lot_scale: what per-lot rates, caps and bonus turnover count."""
        return self.lots * self.lot_scale

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


def costs_of(fill: Fill, lot_scale: Decimal = _ONE) -> Costs:
    lots = fill.lots
    if fill.spread_points is None or fill.point_value is None:
        spread = ZERO
    else:
        # point_value is per lot of this account, in its currency: raw lots, not std_lots.
        spread = fill.spread_points * fill.point_value * lots
    return Costs(lots, spread, max(ZERO, -fill.commission), fill.usd_rate, lot_scale)

"""SPEC 4.3-4.5: the direct IB's commission, the client's rebate and the upline overrides.

Rounding (SPEC 4.9): the L1 gross is rounded once; the rebate is rounded; the IB's net is
gross minus rounded rebate, so rebate + net == gross exactly. Overrides are computed on the
rounded gross, the number the partner sees in the basis.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.costs import Costs
from engine.money import ZERO, fmt, pct_of, round_cents
from engine.rules import Client, Ib, Rule, Upline

__all__ = [
    "Commission",
    "Gross",
    "Override",
    "gross_commission",
    "rebate_rate",
    "split",
    "upline_overrides",
]


@dataclass(frozen=True, slots=True)
class Gross:
    """The L1 gross commission in USD (unrounded), what it was computed on, and how."""

    amount: Decimal
    base: Decimal  # lots (per_lot_usd) or the USD cost the pct applies to
    rule: Rule
    capped: bool

    def formula(self, base_text: str) -> str:
        """The computation in words, for a partner to redo by hand (base_text = fmt(base))."""
        r = self.rule
        if r.method == "per_lot_usd":
            text = f"{base_text} lots x {r.rate_text} USD/lot"
        elif r.method == "spread_pct":
            text = f"{r.rate_text}% of spread cost {base_text} USD"
        else:
            text = f"{r.rate_text}% of commission {base_text} USD"
        if self.capped and r.max_usd_per_lot is not None:
            text += f", capped at {fmt(r.max_usd_per_lot)} USD/lot"
        return text


def gross_commission(rule: Rule, costs: Costs) -> Gross:
    """SPEC 4.3: per_lot_usd x lots, or a pct of the spread cost or of the commission paid."""
    lots = costs.lots
    if rule.method == "per_lot_usd":
        base = lots
        amount = lots * rule.rate
    else:
        base = costs.spread_cost_usd if rule.method == "spread_pct" else costs.commission_usd
        amount = pct_of(base, rule.rate)
    if rule.max_usd_per_lot is not None and amount > rule.max_usd_per_lot * lots:
        return Gross(rule.max_usd_per_lot * lots, base, rule, True)
    return Gross(amount, base, rule, False)


def rebate_rate(client: Client, ib: Ib) -> tuple[Decimal, str]:
    """The client's rebate pct and where it comes from (SPEC 4.4).

    A suspended or cancelled rebate pays 0; otherwise the client override when set, else the
    IB's default.
    """
    if client.rebate_status != "active":
        return ZERO, f"rebate_{client.rebate_status}"
    if client.rebate_pct is not None:
        return client.rebate_pct, "client_override"
    return ib.rebate_pct, "ib_default"


@dataclass(frozen=True, slots=True)
class Commission:
    gross: Decimal  # rounded
    rebate: Decimal  # rounded
    net: Decimal  # gross - rebate


def split(gross: Decimal, rebate_pct: Decimal) -> Commission:
    gross = round_cents(gross)
    rebate = round_cents(pct_of(gross, rebate_pct))
    return Commission(gross, rebate, gross - rebate)


@dataclass(frozen=True, slots=True)
class Override:
    upline: Upline
    rate: Decimal
    amount: Decimal


def upline_overrides(uplines: tuple[Upline, ...], l1_gross: Decimal) -> list[Override]:
    """Level k (k=2 is the direct IB's parent) earns its own plan's upline_override_pct[k-2].

    Paid by the broker on top of L1, so nothing is taken from the direct IB. An inactive
    upline is skipped; the walk goes on above it.
    """
    overrides = []
    for upline in uplines:
        pcts = upline.plan.upline_override_pct
        index = upline.level - 2
        if index >= len(pcts) or upline.ib.status != "active":
            continue
        amount = round_cents(pct_of(l1_gross, pcts[index]))
        if amount:
            overrides.append(Override(upline, pcts[index], amount))
    return overrides

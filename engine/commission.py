"""SPEC 4.3-4.5: the direct IB's commission, the client's rebate and the upline overrides.

Rounding (SPEC 4.9): the L1 gross is rounded once; the rebate is rounded; the IB's net is
gross minus rounded rebate, so rebate + net == gross exactly. Overrides are computed on the
rounded gross, the number the partner sees in the basis.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.costs import Costs
from engine.eligibility import Reason
from engine.money import ZERO, fmt, pct_of, round_cents
from engine.rules import Client, Ib, Rule, Upline

__all__ = [
    "Commission",
    "Gross",
    "Override",
    "Rebate",
    "gross_commission",
    "rebate_rate",
    "split",
    "split_rebate",
    "upline_overrides",
]


@dataclass(frozen=True, slots=True)
class Gross:
    """The L1 gross commission in USD (unrounded), what it was computed on, and how."""

    amount: Decimal
    base: Decimal  # std_lots (per_lot_usd) or the USD cost the pct applies to
    rule: Rule
    capped: bool
    costs: Costs

    def formula(self, base_text: str) -> str:
        """The computation in words, for a partner to redo by hand (base_text = fmt(base))."""
        r = self.rule
        if r.method == "per_lot_usd":
            c = self.costs
            lots = base_text
            if c.lot_scale != 1:  # a cent account: show how its lots became standard lots
                lots = f"{fmt(c.lots)} lots x {fmt(c.lot_scale)} = {base_text} std"
            text = f"{lots} lots x {r.rate_text} USD/lot"
        elif r.method == "spread_pct":
            text = f"{r.rate_text}% of spread cost {base_text} USD"
        else:
            text = f"{r.rate_text}% of commission {base_text} USD"
        if self.capped and r.max_usd_per_lot is not None:
            text += f", capped at {fmt(r.max_usd_per_lot)} USD/lot"
        return text


def gross_commission(rule: Rule, costs: Costs) -> Gross:
    """SPEC 4.3: per_lot_usd x std_lots, or a pct of the spread cost or of the commission paid.

    Per-lot rates and the max_usd_per_lot cap count standard lots (r2), so a cent lot pays
    what the same notional pays on a standard account.
    """
    lots = costs.std_lots
    if rule.method == "per_lot_usd":
        base = lots
        amount = lots * rule.rate
    else:
        base = costs.spread_cost_usd if rule.method == "spread_pct" else costs.commission_usd
        amount = pct_of(base, rule.rate)
    if rule.max_usd_per_lot is not None and amount > rule.max_usd_per_lot * lots:
        return Gross(rule.max_usd_per_lot * lots, base, rule, True, costs)
    return Gross(amount, base, rule, False, costs)


@dataclass(frozen=True, slots=True)
class Rebate:
    """The client's rebate rate for one fill and where it comes from (SPEC 4.4).

    `per_lot` False: `rate` is a percent of the L1 gross; True: USD per standard lot.
    `source`: client_override | plan_rule | ib_default | rebate_suspended | rebate_cancelled.
    """

    rate: Decimal
    per_lot: bool
    source: str

    def amount(self, gross: Decimal, std_lots: Decimal) -> Decimal:
        """The rebate in USD, rounded; a per-lot rebate never exceeds the (rounded) gross."""
        if self.per_lot:
            return min(round_cents(self.rate * std_lots), gross)
        return round_cents(pct_of(gross, self.rate))


def rebate_rate(client: Client, ib: Ib, rule: Rule | None = None) -> Rebate:
    """The client's rebate under this (client, IB) pair.

    A suspended or cancelled rebate pays 0. Otherwise, most specific first: the pair's own
    override pct (an IB's choice for this one client), then the rule's
    `client_rebate_usd_per_lot` (the plan's quote for every client), then the IB's default pct.
    """
    if client.rebate_status != "active":
        return Rebate(ZERO, False, f"rebate_{client.rebate_status}")
    if client.rebate_pct is not None:
        return Rebate(client.rebate_pct, False, "client_override")
    if rule is not None and rule.client_rebate_usd_per_lot is not None:
        return Rebate(rule.client_rebate_usd_per_lot, True, "plan_rule")
    return Rebate(ib.rebate_pct, False, "ib_default")


@dataclass(frozen=True, slots=True)
class Commission:
    gross: Decimal  # rounded
    rebate: Decimal  # rounded
    net: Decimal  # gross - rebate


def split(gross: Decimal, rebate_pct: Decimal) -> Commission:
    """Split the L1 gross by a percentage rebate (see `split_rebate` for any rebate)."""
    return split_rebate(gross, Rebate(rebate_pct, False, ""), ZERO)


def split_rebate(gross: Decimal, rebate: Rebate, std_lots: Decimal) -> Commission:
    gross = round_cents(gross)
    amount = rebate.amount(gross, std_lots)
    return Commission(gross, amount, gross - amount)


@dataclass(frozen=True, slots=True)
class Override:
    upline: Upline
    rate: Decimal
    amount: Decimal


def upline_overrides(
    uplines: tuple[Upline, ...], l1_gross: Decimal, client: str | None = None
) -> tuple[list[Override], list[tuple[Upline, Reason]]]:
    """Level k (k=2 is the direct IB's parent) earns its own plan's upline_override_pct[k-2].

    Paid by the broker on top of L1, so nothing is taken from the direct IB. An inactive
    upline is skipped, and so is an upline whose own client is `client` (the account's
    client: the upline trading under its sub-IB, r2) when its plan excludes self trades; the
    walk goes on above either. Returns (overrides paid, (upline, reason) for those withheld).
    """
    overrides = []
    withheld: list[tuple[Upline, Reason]] = []
    for upline in uplines:
        pcts = upline.plan.upline_override_pct
        index = upline.level - 2
        if index >= len(pcts) or not pcts[index]:
            continue
        if upline.ib.status != "active":
            withheld.append((upline, "ib_inactive"))
            continue
        if upline.plan.exclude_self_trades and client is not None and upline.ib.client == client:
            withheld.append((upline, "self_trade_upline"))
            continue
        amount = round_cents(pct_of(l1_gross, pcts[index]))
        if amount:
            overrides.append(Override(upline, pcts[index], amount))
    return overrides, withheld

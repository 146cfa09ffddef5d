"""SPEC 4.3 anti-abuse: when the direct IB's commission (and its rebate, overrides) is withheld."""

from __future__ import annotations

from typing import Literal

from engine.fill import Fill
from engine.rules import Account, Ib, Plan

__all__ = ["Withheld", "withheld_reason"]

Withheld = Literal["ib_inactive", "min_hold", "min_points", "self_trade"]


def withheld_reason(fill: Fill, account: Account, ib: Ib, plan: Plan) -> Withheld | None:
    """Why the IB commission is not paid for this fill, or None when it is.

    - min_hold: held less than plan.min_hold_seconds (close_time - open_time);
    - min_points: moved less than plan.min_points (|close - open| x 10^digits);
    - self_trade: the account belongs to the IB's own client (unless the plan allows it);
    - ib_inactive: the IB is suspended or terminated at close_time.
    """
    if ib.status != "active":
        return "ib_inactive"
    if plan.min_hold_seconds and fill.hold_seconds < plan.min_hold_seconds:
        return "min_hold"
    if plan.min_points and fill.points_moved < plan.min_points:
        return "min_points"
    if plan.exclude_self_trades and ib.client is not None and account.client == ib.client:
        return "self_trade"
    return None

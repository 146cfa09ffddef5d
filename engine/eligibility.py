"""SPEC 4.3 anti-abuse: when the direct IB's commission (and its rebate, overrides) is withheld."""

from __future__ import annotations

from typing import Literal, get_args

from engine.fill import Fill
from engine.rules import Account, Ib, Plan

__all__ = ["REASONS", "WITHHOLD_CHECKS", "Reason", "withheld_reason"]

Reason = Literal[
    "min_hold",
    "min_points",
    "self_trade",
    "self_trade_upline",
    "ib_inactive",
    "no_rule",
    "demo",
    "unattributed",
    "duplicate",
    "stale",
]
"""Why a fill earned less than its plan (SPEC 4.3 r2): a bounded set, fit for a metric label."""
REASONS: tuple[Reason, ...] = get_args(Reason)
WITHHOLD_CHECKS: tuple[Reason, ...] = ("ib_inactive", "min_hold", "min_points", "self_trade")
"""The checks of `withheld_reason`, in the order it makes them: the first failing one wins."""


def withheld_reason(fill: Fill, account: Account, ib: Ib, plan: Plan) -> Reason | None:
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

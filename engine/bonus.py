"""SPEC 4.8: deposit-bonus turnover and unlock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from engine.money import ZERO
from engine.state import AccountState, Bonus

__all__ = ["add_turnover", "remove_turnover"]


def add_turnover(
    state: AccountState, lots: Decimal, closed_at: datetime
) -> tuple[AccountState, tuple[tuple[str, Decimal], ...], list[Bonus]]:
    """Add `lots` (standard lots) to every open bonus granted at or before `closed_at`.

    Returns (state after, lots added per bonus, bonuses unlocked by this fill).
    """
    if lots <= 0 or not state.bonuses:
        return state, (), []
    added: list[tuple[str, Decimal]] = []
    unlocked: list[Bonus] = []
    bonuses: list[Bonus] = []
    for bonus in state.bonuses:
        if not bonus.unlocked and bonus.granted_at <= closed_at:
            progressed = bonus.turnover_lots + lots
            reached = progressed >= bonus.required_lots
            bonus = replace(bonus, turnover_lots=progressed, unlocked=reached)
            added.append((bonus.bonus_id, lots))
            if reached:
                unlocked.append(bonus)
        bonuses.append(bonus)
    if not added:
        return state, (), []
    return replace(state, bonuses=tuple(bonuses)), tuple(added), unlocked


def remove_turnover(
    state: AccountState, lots_by_bonus: tuple[tuple[str, Decimal], ...]
) -> AccountState:
    """Undo a reversed fill's turnover. An unlock already announced stays unlocked: the bonus
    was paid out, so the wallet service decides on any claw-back."""
    if not lots_by_bonus:
        return state
    removed = dict(lots_by_bonus)
    bonuses = tuple(
        replace(b, turnover_lots=max(ZERO, b.turnover_lots - removed[b.bonus_id]))
        if b.bonus_id in removed
        else b
        for b in state.bonuses
    )
    return replace(state, bonuses=bonuses)

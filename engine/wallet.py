"""SPEC 6 wallet commands: JM USD allocation and deposit-bonus grants, decided purely.

The caller keeps the answer per request_id, so the same request twice changes nothing the
second time (the stored answer is returned instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.credits import WalletEvent
from engine.money import fmt
from engine.rules import RuleBook
from engine.state import AccountState, Bonus, JmAllocation

__all__ = ["Allocation", "BonusGrant", "decide_allocation", "decide_bonus_grant", "wire_event"]


@dataclass(frozen=True, slots=True)
class Allocation:
    accepted: bool
    event: WalletEvent
    account: AccountState
    reward_delta: Decimal  # negative when accepted: moved out of the reward wallet


def decide_allocation(
    request_id: str,
    client_id: str,
    login: int,
    amount: Decimal,
    book: RuleBook,
    reward_balance: Decimal,
    account: AccountState,
    at: datetime,
) -> Allocation:
    """allocate_jm: accepted only for a verified client that owns the login and holds the JM."""
    client = book.get("client", client_id, at)
    owner = book.get("account", str(login), at)
    reason = None
    if amount <= 0:
        reason = "amount_not_positive"
    elif client is None:
        reason = "unknown_client"
    elif not client.verified:
        reason = "client_not_verified"
    elif owner is None or owner.client != client_id:
        reason = "login_not_owned"
    elif reward_balance < amount:
        reason = "insufficient_reward_balance"
    payload = {
        "request_id": request_id,
        "client": client_id,
        "login": login,
        "amount": f"{amount:.2f}",
        "at": _z(at),
    }
    if reason is not None:
        event = WalletEvent(
            WalletEvent.make_id("allocate_jm", request_id),
            "jm_allocation_rejected",
            {**payload, "reason": reason},
        )
        return Allocation(False, event, account, Decimal(0))
    allocation = JmAllocation(request_id, at, amount)
    account = replace(account, allocations=(*account.allocations, allocation))
    event = WalletEvent(
        WalletEvent.make_id("allocate_jm", request_id),
        "jm_allocation_accepted",
        {
            **payload,
            "jm_balance": f"{account.jm_balance:.2f}",
            "reward_balance": f"{reward_balance - amount:.2f}",
        },
    )
    return Allocation(True, event, account, -amount)


@dataclass(frozen=True, slots=True)
class BonusGrant:
    accepted: bool
    event: WalletEvent
    account: AccountState


def decide_bonus_grant(
    request_id: str,
    login: int,
    bonus_id: str,
    amount_usd: Decimal,
    account: AccountState,
    at: datetime,
) -> BonusGrant:
    """grant_bonus: opens a turnover requirement of amount_usd / 2 lots from `at` on."""
    payload = {
        "request_id": request_id,
        "login": login,
        "bonus_id": bonus_id,
        "amount_usd": fmt(amount_usd),
        "granted_at": _z(at),
    }
    event_id = WalletEvent.make_id("grant_bonus", request_id)
    if amount_usd <= 0 or any(b.bonus_id == bonus_id for b in account.bonuses):
        reason = "amount_not_positive" if amount_usd <= 0 else "bonus_exists"
        event = WalletEvent(event_id, "bonus_rejected", {**payload, "reason": reason})
        return BonusGrant(False, event, account)
    bonus = Bonus(bonus_id, amount_usd, at)
    account = replace(account, bonuses=(*account.bonuses, bonus))
    event = WalletEvent(
        event_id, "bonus_granted", {**payload, "required_lots": fmt(bonus.required_lots)}
    )
    return BonusGrant(True, event, account)


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- wallet-event.v1 -------------------------------------------------------------------------

# Payload names of the decisions above -> wallet-event.v1 names (None: not on the wire).
_RENAMES: Mapping[str, Mapping[str, str | None]] = {
    "jm_allocation_accepted": {
        "at": "allocated_at",
        "jm_balance": "jm_allocated_balance",
        "reward_balance": "reward_jm_balance",
    },
    "jm_allocation_rejected": {"at": None},  # the schema has no time on a rejection
}
# What a rejected allocation tells the wallet service, by reason.
_DETAILS = {
    "amount_not_positive": "the amount must be positive",
    "unknown_client": "client {client} is not known",
    "client_not_verified": "client {client} is not verified",
    "login_not_owned": "login {login} does not belong to client {client}",
    "insufficient_reward_balance": "the reward wallet of client {client} holds less than {amount}",
}


def wire_event(event: WalletEvent, engine_version: str) -> dict[str, Any]:
    """A decision's event in wallet-event.v1 names, with a detail for rejections."""
    data = event.to_dict()
    for old, new in _RENAMES.get(event.event, {}).items():
        value = data.pop(old, None)
        if new is not None and value is not None:
            data[new] = value
    reason = data.get("reason")
    if event.event == "jm_allocation_rejected" and reason in _DETAILS:
        data["detail"] = _DETAILS[reason].format(**data)
    data["engine_version"] = engine_version
    return data

"""SPEC 6: allocate_jm and grant_bonus decisions, idempotent per request_id."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from engine.wallet import Allocation, BonusGrant
from tests.factories import make_ledger

SEED = """
effective_from: "2024-01-01T00:00:00Z"
clients:
  - {id: C-1, verified: true}
  - {id: C-2, verified: false}
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-2, type: standard}
wallets:
  - {client: C-1, reward_jm: "30.00"}
  - {client: C-2, reward_jm: "30.00"}
"""
NOW = datetime.fromisoformat("2024-05-01T12:00:00Z")


@pytest.mark.parametrize(
    ("client", "login", "amount", "reason"),
    [
        ("C-2", 2, "10", "client_not_verified"),
        ("C-1", 2, "10", "login_not_owned"),
        ("C-1", 1, "30.01", "insufficient_reward_balance"),
        ("C-1", 1, "0", "amount_not_positive"),
        ("C-9", 1, "1", "unknown_client"),
    ],
)
def test_allocation_is_rejected_with_the_reason(
    client: str, login: int, amount: str, reason: str
) -> None:
    ledger = make_ledger(SEED)
    answer = ledger.allocate_jm("r-1", client, login, Decimal(amount), NOW)
    assert isinstance(answer, Allocation)
    assert (answer.accepted, answer.event.event, answer.event.payload["reason"]) == (
        False,
        "jm_allocation_rejected",
        reason,
    )
    assert ledger.rewards[client if client != "C-9" else "C-1"] == Decimal("30.00")


def test_accepted_allocation_moves_jm_and_the_same_request_twice_changes_nothing() -> None:
    ledger = make_ledger(SEED)
    first = ledger.allocate_jm("r-1", "C-1", 1, Decimal("12.50"), NOW)
    second = ledger.allocate_jm("r-1", "C-1", 1, Decimal("12.50"), NOW)
    assert isinstance(first, Allocation) and first.accepted
    assert second is first
    assert ledger.rewards["C-1"] == Decimal("17.50")
    assert ledger.account(1).jm_balance == Decimal("12.50")
    assert first.event.payload["reward_balance"] == "17.50"


def test_bonus_grant_opens_a_turnover_requirement_once() -> None:
    ledger = make_ledger(SEED)
    grant = ledger.grant_bonus("g-1", 1, "B-7", Decimal("300"), NOW)
    assert isinstance(grant, BonusGrant) and grant.accepted
    assert grant.event.payload["required_lots"] == "150"
    again = ledger.grant_bonus("g-2", 1, "B-7", Decimal("300"), NOW)
    assert isinstance(again, BonusGrant) and not again.accepted
    assert again.event.payload["reason"] == "bonus_exists"
    assert len(ledger.account(1).bonuses) == 1

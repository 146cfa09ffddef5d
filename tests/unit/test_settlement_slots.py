"""engine/settlement.py: the payout slot a credit is summed in, and a revision's increments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.credits import Credit
from engine.payouts import parse_period
from engine.settlement import (
    LotsIncrement,
    SettlementIncrement,
    lots_units,
    parse_slot,
    payout_increments,
    slot_label,
    units_lots,
)
from tests.factories import make_ledger
from tests.payout_factories import LIVE_SEED, credits_for, fill_of


@pytest.mark.parametrize(
    ("period_id", "hold", "label"),
    [
        ("2024-03-04T10", 0, "2024-03-04T10:00:00Z"),  # the hourly settlement's own key
        ("2024-03-04T10", 2, "2024-03-04T10+2h"),
        ("2024-03-04", 24, "2024-03-04+24h"),
        ("2024-W10", 0, "2024-W10+0h"),
        ("2024-03", 48, "2024-03+48h"),
    ],
)
def test_slot_labels_name_the_period_and_hold_and_read_back(
    period_id: str, hold: int, label: str
) -> None:
    period = parse_period(period_id)
    assert slot_label(period, hold) == label
    assert parse_slot(label) == (period, hold)


def test_lots_units_are_exact_to_ten_decimals() -> None:
    # An MT5 cent account: 0.0001 lots x 0.01 = 0.000001 std lots = 10^4 units of 10^-10.
    assert lots_units(Decimal("0.000001")) == 10_000
    assert units_lots(lots_units(Decimal("-125.5"))) == Decimal("-125.5")


def _credits(*lines: bytes) -> list[Credit]:
    return [Credit.from_dict(c) for c in credits_for(list(lines), LIVE_SEED)]


def test_a_reversed_revision_takes_its_lots_and_commission_off_its_own_period() -> None:
    book = make_ledger(LIVE_SEED).book
    # C-R (100% rebate): no ib_commission, only the client rebate names IB-T: lots, no money.
    first = _credits(fill_of(12, 3, "30", "2024-03-15T12:10:00Z"))
    assert [c.kind for c in first] == ["client_rebate"]
    march = int(datetime(2024, 4, 1, tzinfo=UTC).timestamp())  # monthly, no hold
    assert payout_increments(first, (), book) == (
        (),
        (LotsIncrement("IB-T", Decimal(30), "2024-03+0h", march),),
    )
    # IB-T's C-T deal 11 closed on March 31st; deleted in April: both taken off March.
    standing = _credits(fill_of(11, 2, "6", "2024-03-31T23:50:00Z"))
    deleted = _credits(
        fill_of(11, 2, "6", "2024-03-31T23:50:00Z"),
        fill_of(11, 2, "6", "2024-04-02T09:00:00Z", event="delete"),
    )[len(standing) :]
    assert [c.kind for c in deleted] == ["reversal"]
    # 6 lots x 10.00 = 60.00 commission reversed: -60.00, count -1, in March.
    assert payout_increments(deleted, standing, book) == (
        (SettlementIncrement("IB-T", Decimal("-60.00"), -1, "2024-03+0h", march),),
        (LotsIncrement("IB-T", Decimal(-6), "2024-03+0h", march),),
    )


def test_an_ib_without_tiers_adds_no_lots_and_its_hold_moves_the_payable_time() -> None:
    book = make_ledger(LIVE_SEED).book
    credits = _credits(fill_of(1, 1, "1", "2024-03-04T10:10:00Z"))
    # IB-D, daily with a 24 h hold: the 4th ends at the 5th 00:00, payable the 6th 00:00.
    payable = int(datetime(2024, 3, 6, tzinfo=UTC).timestamp())
    assert payout_increments(credits, (), book) == (
        (SettlementIncrement("IB-D", Decimal("8.00"), 1, "2024-03-04+24h", payable),),
        (),
    )

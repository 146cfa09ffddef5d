"""Payout periods, holds, report numbering and volume tiers (SPEC 6 [r2]), by hand."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.payouts import (
    PERIODS,
    Report,
    direct_std_lots,
    next_report,
    parse_period,
    period_of,
    settlement_id,
    tier_bonus_credit,
    tier_bonus_id,
    tier_reached,
)
from schemas import SchemaError, validate
from tests.payout_factories import MARCH, TIERS, credits_for, fill_of

AT = datetime(2024, 3, 6, 10, 42, 7, tzinfo=UTC)  # a Wednesday of ISO week 10


@pytest.mark.parametrize(
    ("kind", "period_id", "start", "end"),
    [
        ("hourly", "2024-03-06T10", "2024-03-06T10:00:00+00:00", "2024-03-06T11:00:00+00:00"),
        ("daily", "2024-03-06", "2024-03-06T00:00:00+00:00", "2024-03-07T00:00:00+00:00"),
        # 2024-03-06 is a Wednesday: its ISO week 10 runs Monday 4 March to Monday 11 March.
        ("weekly", "2024-W10", "2024-03-04T00:00:00+00:00", "2024-03-11T00:00:00+00:00"),
        ("monthly", "2024-03", "2024-03-01T00:00:00+00:00", "2024-04-01T00:00:00+00:00"),
    ],
)
def test_period_of_a_close_time(kind: str, period_id: str, start: str, end: str) -> None:
    period = period_of(kind, AT)
    assert (period.id, period.start.isoformat(), period.end.isoformat()) == (period_id, start, end)
    assert parse_period(period_id) == period


def test_periods_at_year_ends() -> None:
    # 2024-12-30 is a Monday: ISO week 1 of 2025 (it holds 2 January 2025, a Thursday).
    week = period_of("weekly", datetime(2024, 12, 31, 23, 59, tzinfo=UTC))
    assert (week.id, week.start.date().isoformat()) == ("2025-W01", "2024-12-30")
    december = parse_period("2024-12")
    assert december.end == datetime(2025, 1, 1, tzinfo=UTC)
    # A non-UTC close time is placed by its UTC instant: 00:30 at +02:00 is 22:30 the day before.
    assert period_of("daily", datetime.fromisoformat("2024-03-07T00:30:00+02:00")).id == (
        "2024-03-06"
    )


@pytest.mark.parametrize("text", ["2024-13", "2024-W54", "2024-3-6", "2024-02-30", "weekly"])
def test_bad_period_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad period|month|day|week"):
        parse_period(text)


def test_payable_after_the_hold() -> None:
    # Daily period of 6 March ends 7 March 00:00; a 24 h hold makes it payable 8 March 00:00.
    assert parse_period("2024-03-06").payable_at(24) == datetime(2024, 3, 8, tzinfo=UTC)
    assert parse_period("2024-03-06T10").payable_at(0) == datetime(2024, 3, 6, 11, tzinfo=UTC)


def test_reports_are_numbered_and_carry_the_difference() -> None:
    first = next_report(None, Decimal("120.00"), 3)
    assert first == Report(0, Decimal("120.00"), 3, Decimal("120.00"), 3)
    assert next_report(first, Decimal("120.00"), 3) is None  # nothing changed
    # A late credit of 15.00: adjustment 1 says +15.00, +1 credit.
    late = next_report(first, Decimal("135.00"), 4)
    assert late == Report(1, Decimal("15.00"), 1, Decimal("135.00"), 4)
    # A reversal of 40.00 after that: adjustment 2 says -40.00, -1 credit.
    assert next_report(late, Decimal("95.00"), 3) == Report(
        2, Decimal("-40.00"), -1, Decimal("95.00"), 3
    )
    assert next_report(None, Decimal(0), 0) is None  # netted out inside the hold: no report


def test_settlement_ids() -> None:
    month = parse_period("2024-03")
    assert settlement_id("IB-1", month, 0) != settlement_id("IB-1", month, 1)
    assert settlement_id("IB-1", month, 0) != settlement_id("IB-2", month, 0)
    # An hour keeps the id today's hourly settlement gives it: blake2b-128 of "ib|hour|seq".
    key = b"IB-1|2024-03-04T10:00:00Z|2"
    expected = "st_" + hashlib.blake2b(key, digest_size=16).hexdigest()
    assert settlement_id("IB-1", parse_period("2024-03-04T10"), 2) == expected


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(PERIODS),
    # hypothesis takes naive bounds and attaches the time zone itself
    at=st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
)
def test_a_period_holds_its_instant_and_its_id_names_it(kind: str, at: datetime) -> None:
    period = period_of(kind, at)
    assert period.contains(at)
    assert parse_period(period.id) == period
    # The next period starts where this one ends: periods tile time without gaps.
    assert period_of(kind, period.end).start == period.end


def test_highest_tier_reached() -> None:
    assert tier_reached(TIERS, Decimal("99.99")) is None
    assert tier_reached(TIERS, Decimal(100)) == TIERS[0]
    assert tier_reached(TIERS, Decimal("499.99")) == TIERS[0]
    assert tier_reached(tuple(reversed(TIERS)), Decimal(500)) == TIERS[1]


def _march_lots(credits: list[dict[str, Any]]) -> Decimal:
    return direct_std_lots(credits, "IB-1", parse_period("2024-03"))


def test_tier_bonus_of_a_month_by_hand() -> None:
    credits = credits_for(MARCH)
    # C-3's fill earns IB-1 nothing net (100% rebate) but is an earning fill of a direct client.
    assert not [c for c in credits if c["kind"] == "ib_commission" and c["fill"]["deal"] == 4]
    # 50 + 20.5 (C-1) + 30 (C-2) + 20 (C-3) = 120.5 std lots; April's 10 and IB-2's 400 are out.
    lots = _march_lots(credits)
    assert lots == Decimal("120.5")
    bonus = tier_bonus_credit("IB-1", parse_period("2024-03"), TIERS, lots, engine_version="test")
    assert bonus is not None
    validate("credit.v1", bonus)
    # 120.5 >= 100 (tier 1), < 500: 120.5 x 1 USD = 120.50.
    assert bonus["amount"] == "120.50"
    assert bonus["credit_id"] == tier_bonus_id("IB-1", "2024-03", 0)
    basis = bonus["basis"]
    assert basis["tier_reached"] == {"from_std_lots": "100", "per_lot_bonus_usd": "1"}
    assert (basis["period"], basis["std_lots"], basis["sequence"]) == ("2024-03", "120.5", 0)
    assert basis["tiers"] == [
        {"from_std_lots": "100", "per_lot_bonus_usd": "1"},
        {"from_std_lots": "500", "per_lot_bonus_usd": "2"},
    ]
    assert basis["formula"] == ("120.5 std lots x 1 USD/lot (tier from 100 std lots) = 120.50")


def test_late_fills_and_reversals_give_numbered_adjustments() -> None:
    period = parse_period("2024-03")
    first = tier_bonus_credit(
        "IB-1", period, TIERS, _march_lots(credits_for(MARCH)), engine_version="test"
    )
    assert first is not None
    # A late fill of 5 lots on 30 March: 125.5 x 1 = 125.50, paid 120.50 -> adjustment +5.00.
    late = [*MARCH, fill_of(7, 2, "5", "2024-03-30T10:10:00Z")]
    adj1 = tier_bonus_credit(
        "IB-1", period, TIERS, _march_lots(credits_for(late)), [first], engine_version="test"
    )
    assert adj1 is not None
    validate("credit.v1", adj1)
    assert (adj1["amount"], adj1["basis"]["sequence"]) == ("5.00", 1)
    assert adj1["basis"]["adjusts"] == first["credit_id"]
    assert adj1["basis"]["formula"].endswith("125.50 - 120.50 paid = 5.00")
    # The 50-lot deal 1 is deleted: 125.5 - 50 = 75.5 < 100, no tier: 0 - 125.50 = -125.50.
    deleted = [*late, fill_of(1, 1, "50", "2024-03-04T10:10:00Z", event="delete")]
    credits = credits_for(deleted)
    assert _march_lots(credits) == Decimal("75.5")
    adj2 = tier_bonus_credit(
        "IB-1", period, TIERS, _march_lots(credits), [first, adj1], engine_version="test"
    )
    assert adj2 is not None
    validate("credit.v1", adj2)
    assert (adj2["amount"], adj2["basis"]["sequence"]) == ("-125.50", 2)
    assert adj2["basis"]["tier_reached"] is None
    # Nothing changed since: nothing more is due.
    assert (
        tier_bonus_credit(
            "IB-1", period, TIERS, Decimal("75.5"), [first, adj1, adj2], engine_version="test"
        )
        is None
    )


def test_an_update_counts_the_new_revision_only() -> None:
    # Deal 2 is corrected from 20.5 to 25 lots: 50 + 25 + 30 + 20 = 125 std lots.
    updated = [*MARCH, fill_of(2, 1, "25", "2024-03-15T12:10:00Z", event="update")]
    assert _march_lots(credits_for(updated)) == Decimal(125)


_BUSY = [
    *MARCH,
    fill_of(7, 2, "5", "2024-03-30T10:10:00Z"),
    fill_of(2, 1, "25", "2024-03-15T12:10:00Z", event="update"),
    fill_of(1, 1, "50", "2024-03-04T10:10:00Z", event="delete"),
    fill_of(8, 3, "480", "2024-03-05T10:10:00Z"),
]
_BUSY_CREDITS = credits_for(_BUSY)


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(len(_BUSY_CREDITS))))
def test_tier_credits_do_not_depend_on_the_interleaving(order: list[int]) -> None:
    # However partitions interleave the credits, the lots and so the tier credit are the same:
    # 25 (deal 2 updated) + 30 + 20 + 5 + 480 = 560 std lots (deal 1 deleted) -> tier 500:
    # 560 x 2 = 1120.00.
    shuffled = [_BUSY_CREDITS[i] for i in order]
    lots = _march_lots(shuffled)
    assert lots == Decimal(560)
    bonus = tier_bonus_credit("IB-1", parse_period("2024-03"), TIERS, lots, engine_version="t")
    assert bonus is not None and bonus["amount"] == "1120.00"


def test_credit_v1_takes_a_tier_bonus_without_a_fill_and_nothing_else() -> None:
    bonus = tier_bonus_credit(
        "IB-1", parse_period("2024-03"), TIERS, Decimal("120.5"), engine_version="t"
    )
    assert bonus is not None
    validate("credit.v1", bonus)
    [commission] = [c for c in credits_for(MARCH[:1]) if c["kind"] == "ib_commission"]
    # Only a tier bonus pays a period rather than a fill: no other kind may drop its fill...
    with pytest.raises(SchemaError):
        validate("credit.v1", commission | {"fill": None})
    # ...and a tier bonus names no fill, pays an IB and says its period.
    for broken in (
        bonus | {"fill": commission["fill"]},
        bonus | {"beneficiary": {"type": "client", "id": "C-1"}},
        bonus | {"amount": "0.00"},
        bonus | {"basis": {k: v for k, v in bonus["basis"].items() if k != "period"}},
    ):
        with pytest.raises(SchemaError):
            validate("credit.v1", broken)


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations(range(len(_BUSY_CREDITS))),
    cuts=st.lists(st.integers(0, len(_BUSY_CREDITS)), max_size=4),
)
def test_adjustments_add_up_to_the_final_bonus(order: list[int], cuts: list[int]) -> None:
    # The period is evaluated after each arrival batch (the hold ended, then late credits):
    # whatever the batches, the bonus and its numbered adjustments add up to the bonus of all
    # the credits, 1120.00 (see above), and are numbered 0, 1, 2, ... in emission order.
    shuffled = [_BUSY_CREDITS[i] for i in order]
    period = parse_period("2024-03")
    paid: list[dict[str, Any]] = []
    for cut in [*sorted(cuts), len(shuffled)]:
        lots = direct_std_lots(shuffled[:cut], "IB-1", period)
        if credit := tier_bonus_credit("IB-1", period, TIERS, lots, paid, engine_version="t"):
            paid.append(credit)
    assert sum(Decimal(c["amount"]) for c in paid) == Decimal("1120.00")
    assert [c["basis"]["sequence"] for c in paid] == list(range(len(paid)))
    assert len({c["credit_id"] for c in paid}) == len(paid)

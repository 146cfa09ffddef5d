"""Partner statements and reconciliation (SPEC 6 [r2]) with numbers done by hand.

TIER_SEED: 10 USD a lot, IB-1 gives its clients 20% (C-3: 100%). IB-1's March 2024:
  deal 1, C-1, 50 lots,   4 March 10:10: gross 500.00, rebate 100.00 -> IB 400.00
  deal 2, C-1, 20.5 lots, 15 March 12:10: gross 205.00, rebate  41.00 -> IB 164.00
  deal 3, C-2, 30 lots,   20 March 09:10: gross 300.00, rebate  60.00 -> IB 240.00
  deal 4, C-3, 20 lots,   31 March 23:10: gross 200.00, rebate 200.00 -> IB nothing
  deal 5 is April's, deal 6 is IB-2's.
So IB-1 is paid 400 + 164 + 240 = 804.00 in 3 credits for March.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.payouts import direct_std_lots, parse_period, tier_bonus_credit
from engine.statement import Group, reconcile, statement
from tests.payout_factories import EVENTS, MARCH, TIERS, credits_for, fill_of, hourly_event

PERIOD = parse_period("2024-03")


def test_a_month_per_client_symbol_rule_level_and_day() -> None:
    result = statement(credits_for(MARCH), "IB-1", PERIOD, EVENTS)
    assert [(ln.deal, ln.amount) for ln in result.lines] == [
        ("1", Decimal("400.00")),
        ("2", Decimal("164.00")),
        ("3", Decimal("240.00")),
    ]
    assert result.total == result.settled_total == Decimal("804.00")
    assert result.tier_bonus_total == 0
    # C-1: 400 + 164 = 564.00 over 50 + 20.5 = 70.5 lots; C-2: 240.00 over 30 lots.
    assert result.by["client"] == (
        Group("C-1", 2, Decimal("70.5"), Decimal("564.00")),
        Group("C-2", 1, Decimal(30), Decimal("240.00")),
    )
    assert result.by["symbol"] == (Group("EURUSD", 3, Decimal("100.5"), Decimal("804.00")),)
    assert result.by["level"] == (Group("L1", 3, Decimal("100.5"), Decimal("804.00")),)
    [rule] = result.by["rule"]
    assert rule.key.startswith("flat") and rule.amount == Decimal("804.00")
    # Every line explains itself: 50 lots x 10 USD = 500.00 gross - 100.00 rebate = 400.00.
    assert result.lines[0].formula.endswith("= 500.00 gross - 100.00 client rebate = 400.00")
    daily = result.daily()
    assert len(daily) == 31  # every day of March, also the empty ones
    assert {g.key: g.amount for g in daily if g.amount} == {
        "2024-03-04": Decimal("400.00"),
        "2024-03-15": Decimal("164.00"),
        "2024-03-20": Decimal("240.00"),
    }
    recon = result.reconciliation
    assert recon is not None and recon.equal
    # 3 IB-1 events of March: 400 + 164 + 240 = 804.00 in 1 + 1 + 1 = 3 credits.
    assert (recon.events, recon.events_amount, recon.events_count) == (3, Decimal("804.00"), 3)


def test_tier_bonus_and_reversal_lines() -> None:
    deleted = [*MARCH, fill_of(1, 1, "50", "2024-03-04T10:10:00Z", event="delete")]
    credits = credits_for(deleted)
    # Before the delete the month had 120.5 std lots: the bonus paid was 120.50 (see
    # test_payouts); it is part of the credits the statement reads.
    bonus = tier_bonus_credit("IB-1", PERIOD, TIERS, Decimal("120.5"), engine_version="t")
    assert bonus is not None
    # After the delete: 70.5 lots, below 100: adjustment 0.00 - 120.50 = -120.50.
    lots = direct_std_lots(credits, "IB-1", PERIOD)
    adjustment = tier_bonus_credit("IB-1", PERIOD, TIERS, lots, [bonus], engine_version="t")
    assert adjustment is not None
    result = statement([*credits, bonus, adjustment], "IB-1", PERIOD)
    # The reversal of deal 1 belongs to 4 March (the reversed credit's close time):
    # 400.00 - 400.00 + 164.00 + 240.00 = 404.00 settled, 120.50 - 120.50 = 0.00 tier bonus.
    assert result.settled_total == Decimal("404.00")
    assert result.tier_bonus_total == Decimal("0.00")
    assert result.total == Decimal("404.00")
    reversal = next(ln for ln in result.lines if ln.kind == "reversal of ib_commission")
    assert (reversal.day, reversal.amount, reversal.std_lots) == (
        "2024-03-04",
        Decimal("-400.00"),
        Decimal(-50),
    )
    reversed_line = next(ln for ln in result.lines if ln.credit_id == reversal_of(credits))
    assert reversal.rule == reversed_line.rule  # the reversed credit's rule
    # C-1 nets 1 credit (2 - 1 reversed), 70.5 - 50 = 20.5 lots, 564 - 400 = 164.00.
    assert result.by["client"][0] == Group("C-1", 1, Decimal("20.5"), Decimal("164.00"))
    assert result.reconciliation is None


def reversal_of(credits: list[dict[str, Any]]) -> str:
    [reversed_id] = [c["reverses"] for c in credits if c["kind"] == "reversal"
                     and c["beneficiary"]["id"] == "IB-1"]  # fmt: skip
    return str(reversed_id)


def test_reconcile_names_the_difference() -> None:
    credits = credits_for(MARCH)
    # IB-1's 20 March hour is missing from the events: 804.00 - 564.00 = 240.00, 1 credit.
    partial = [e for e in EVENTS if e["hour"] != "2024-03-20T09:00:00Z"]
    by_ib = {r.ib: r for r in reconcile(credits, partial, PERIOD)}
    assert set(by_ib) == {"IB-1", "IB-2"}
    assert by_ib["IB-2"].equal  # 400 lots x 10 = 4000.00, rebate 0%
    ib1 = by_ib["IB-1"]
    assert not ib1.equal
    assert (ib1.difference, ib1.credits_count - ib1.events_count) == (Decimal("240.00"), 1)
    assert "DIFFERENCE 240.00 USD, 1 credits" in ib1.describe()
    # An adjustment that reports the same hour again (say +240.00 twice) is a difference too.
    doubled = [*EVENTS, hourly_event("IB-1", "2024-03-20T09:00:00Z", "240.00", 1, 1)]
    ib1 = {r.ib: r for r in reconcile(credits, doubled, PERIOD)}["IB-1"]
    assert ib1.difference == Decimal("-240.00")


def test_weekly_period_takes_only_its_days() -> None:
    # ISO week 2024-W11 runs 11 to 18 March: only deal 2 (15 March, 164.00) falls in it.
    result = statement(credits_for(MARCH), "IB-1", parse_period("2024-W11"), EVENTS)
    assert [ln.deal for ln in result.lines] == ["2"]
    assert len(result.daily()) == 7
    assert result.reconciliation is not None and result.reconciliation.equal

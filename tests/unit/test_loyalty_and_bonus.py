"""SPEC 4.6-4.8: JM USD coverage, loyalty accrual, deposit-bonus turnover."""

from __future__ import annotations

from decimal import Decimal

from tests.factories import amounts, lots, make_fill, make_ledger

SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
clients: [{id: C-1, verified: true}]
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-1, type: standard_cent}
wallets:
  - {client: C-1, reward_jm: "100.00"}
  - {login: 1, jm_allocated: "6.00", allocated_at: "2024-03-01T09:00:00Z"}
bonuses:
  - {login: 1, bonus_id: B-1, amount_usd: "10", granted_at: "2024-02-01T00:00:00Z"}
  - {login: 2, bonus_id: B-C, amount_usd: "2", granted_at: "2024-02-01T00:00:00Z"}
"""


def _trade(deal: int, commission: str, **kw: object) -> object:
    return make_fill(deal=deal, login=kw.pop("login", 1), commission=commission, **kw)


def test_coverage_runs_out_mid_trade_then_accrual_takes_the_rest() -> None:
    ledger = make_ledger(SEED)
    # Trade 1: cost $8 -> coverage wants 50% = $4.00, balance $6.00 -> covered 4.00;
    # accrual 10% x (8 - 4) = 0.40 JM.
    first = ledger.process(_trade(1, "-8.00"))
    assert amounts(first) == {("jm_coverage", "1"): "4.00", ("loyalty_accrual", "C-1"): "0.40"}
    # Trade 2: cost $8 -> wants $4.00 but only $2.00 is left: covered 2.00 (runs out mid-trade);
    # accrual 10% x (8 - 2) = 0.60.
    second = ledger.process(_trade(2, "-8.00"))
    assert amounts(second) == {("jm_coverage", "1"): "2.00", ("loyalty_accrual", "C-1"): "0.60"}
    # Trade 3: balance 0: nothing covered; accrual 10% x 8 = 0.80.
    third = ledger.process(_trade(3, "-8.00"))
    assert amounts(third) == {("loyalty_accrual", "C-1"): "0.80"}
    assert ledger.account(1).jm_balance == 0
    assert ledger.rewards["C-1"] == Decimal("101.80")


def test_position_opened_before_the_allocation_is_not_covered() -> None:
    result = make_ledger(SEED).process(
        _trade(1, "-8.00", open_time="2024-03-01T08:59:59Z", close_time="2024-03-01T10:10:00Z")
    )
    assert amounts(result) == {("loyalty_accrual", "C-1"): "0.80"}


def test_coverage_and_accrual_use_usd_costs_with_spread() -> None:
    # EUR account, usd_rate 1.2: spread 20 points x 0.5 EUR/point x 1 lot = 10 EUR plus
    # commission 5 EUR = 15 EUR = $18 cost; coverage 50% = 9.00 but balance is 6.00;
    # accrual 10% x (18 - 6) = 1.20.
    result = make_ledger(SEED).process(
        _trade(1, "-5.00", currency="EUR", usd_rate="1.2", spread_points=20, point_value="0.5")
    )
    assert amounts(result) == {("jm_coverage", "1"): "6.00", ("loyalty_accrual", "C-1"): "1.20"}
    covered = next(c for c in result.credits if c.kind == "jm_coverage")
    assert covered.basis["wanted"] == "9.00"
    assert covered.beneficiary_type == "account"
    assert covered.currency == "USD"


def test_ib_referred_clients_can_be_excluded_from_accrual() -> None:
    seed = SEED.replace('coverage_pct: "50"}', 'coverage_pct: "50", exclude_ib_referred: true}')
    seed = seed.replace(
        "clients: [{id: C-1, verified: true}]",
        "plans: [{id: p, rules: [{account_types: ['*'], symbols: ['*'], per_lot_usd: '1'}]}]\n"
        "ibs: [{id: IB-1, plan: p}]\n"
        "clients: [{id: C-1, ib: IB-1, verified: true}]",
    )
    result = make_ledger(seed).process(_trade(1, "-8.00"))
    assert ("loyalty_accrual", "C-1") not in amounts(result)


def test_bonus_unlocks_once_at_half_the_bonus_in_lots() -> None:
    # $10 bonus -> 5 lots of turnover. 3 lots, then 2 lots: unlocked on the second fill.
    ledger = make_ledger(SEED)
    first = ledger.process(make_fill(deal=1, login=1, volume=lots(3)))
    assert first.output.events == ()
    second = ledger.process(make_fill(deal=2, login=1, volume=lots(2)))
    (event,) = second.output.events
    assert event.event == "bonus_unlocked"
    assert (event.payload["bonus_id"], event.payload["turnover_lots"]) == ("B-1", "5")
    third = ledger.process(make_fill(deal=3, login=1, volume=lots(2)))
    assert third.output.events == ()  # already unlocked: announced once


def test_cent_account_turnover_counts_lots_over_100() -> None:
    # $2 bonus -> 1 lot. A cent account trading 50 cent lots counts 0.5; 100 unlock it.
    ledger = make_ledger(SEED)
    ledger.process(make_fill(deal=1, login=2, currency="USC", volume=lots(50)))
    assert ledger.account(2).bonuses[0].turnover_lots == Decimal("0.5")
    done = ledger.process(make_fill(deal=2, login=2, currency="USC", volume=lots(50)))
    assert [e.event for e in done.output.events] == ["bonus_unlocked"]


def test_fills_closed_before_the_grant_do_not_count() -> None:
    ledger = make_ledger(SEED)
    ledger.process(
        make_fill(
            login=1,
            volume=lots(9),
            open_time="2024-01-10T10:00:00Z",
            close_time="2024-01-10T10:10:00Z",
        )
    )
    assert ledger.account(1).bonuses[0].turnover_lots == 0

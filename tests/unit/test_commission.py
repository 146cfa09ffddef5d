"""SPEC 4.1, 4.3, 4.4, 4.9: IB commission methods, caps, rule matching, rebate split, rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.money import round_cents
from tests.factories import amounts, lots, make_fill, make_ledger

AMARKETS = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: amarkets
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "15"}]
ibs: [{id: IB-A, plan: amarkets, rebate_pct: "20"}]
clients: [{id: C-1, ib: IB-A, verified: true}]
accounts: [{login: 900001, client: C-1, type: standard}]
"""


def test_amarkets_100_lots_at_15_usd_with_20_pct_to_clients() -> None:
    # 100 lots x $15 = $1,500 gross; 20% to the client = $300; the IB keeps $1,200.
    ledger = make_ledger(AMARKETS)
    result = ledger.process(make_fill(volume=lots(100)))
    assert amounts(result) == {
        ("ib_commission", "IB-A"): "1200.00",
        ("client_rebate", "C-1"): "300.00",
    }
    ib = next(c for c in result.credits if c.kind == "ib_commission")
    assert ib.basis["gross"] == "1500.00"
    assert (
        ib.basis["formula"]
        == "100 lots x 15 USD/lot = 1500.00 gross - 300.00 client rebate = 1200.00"
    )


def test_amarkets_150_lots_gives_the_ib_1800() -> None:
    # 150 x 15 = 2,250; 20% = 450 to the client; 2,250 - 450 = 1,800 to the IB.
    result = make_ledger(AMARKETS).process(make_fill(volume=lots(150)))
    assert amounts(result)[("ib_commission", "IB-A")] == "1800.00"
    assert amounts(result)[("client_rebate", "C-1")] == "450.00"


B2CORE = """
effective_from: "2024-01-01T00:00:00Z"
symbols: {groups: {metals: [XAUUSD]}}
plans:
  - id: b2
    rules:
      - {account_types: ["*"], symbols: ["*"], commission_pct: "10"}
      - {account_types: ["*"], symbols: [metals], per_lot_usd: "2"}
ibs: [{id: IB-B, plan: b2, rebate_pct: "0"}]
clients: [{id: C-1, ib: IB-B, verified: true}]
accounts: [{login: 900001, client: C-1, type: raw_spread}]
loyalty: {accrual_pct: "0"}
"""


def test_b2core_commission_pct_70_usd_at_10_pct_is_7() -> None:
    result = make_ledger(B2CORE).process(make_fill(commission="-70.00"))
    assert amounts(result) == {("ib_commission", "IB-B"): "7.00"}


def test_b2core_per_lot_10_lots_at_2_usd_is_20() -> None:
    result = make_ledger(B2CORE).process(
        make_fill(
            symbol="XAUUSD", volume=lots(10), digits=2, open_price="2000.00", close_price="2001.00"
        )
    )
    assert amounts(result) == {("ib_commission", "IB-B"): "20.00"}


SPREAD = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: sp
    rules: [{account_types: ["*"], symbols: ["*"], spread_pct: "37", max_usd_per_lot: "{cap}"}]
ibs: [{id: IB-S, plan: sp, rebate_pct: "0"}]
clients: [{id: C-1, ib: IB-S, verified: true}]
accounts: [{login: 900001, client: C-1, type: pro}, {login: 900009, client: C-1, type: cent}]
loyalty: {accrual_pct: "0"}
"""


def test_percent_of_spread_37_pct_of_1_lot_10_points_at_1_usd() -> None:
    # spread cost = 10 points x $1/point x 1 lot = $10; 37% = $3.70.
    result = make_ledger(SPREAD.replace("{cap}", "100")).process(
        make_fill(spread_points=10, point_value="1")
    )
    assert amounts(result) == {("ib_commission", "IB-S"): "3.70"}


def test_cap_per_lot_limits_the_gross() -> None:
    # 37% of 2 lots x 100 points x $1 = $74, capped at $5/lot x 2 lots = $10.
    result = make_ledger(SPREAD.replace("{cap}", "5")).process(
        make_fill(volume=lots(2), spread_points=100, point_value="1")
    )
    assert amounts(result) == {("ib_commission", "IB-S"): "10.00"}
    assert "capped at 5 USD/lot" in result.credits[0].basis["formula"]


def test_cent_account_tiny_spread_rounds_to_zero_and_emits_nothing() -> None:
    # USC account: 0.01 lot x 10 points x (0.00001 x 1000 = 0.01 USC/point) = 0.001 USC
    # = 0.00001 USD; 37% of that rounds to 0.00, and zero credits are not emitted.
    ledger = make_ledger(SPREAD.replace("{cap}", "100"))
    result = ledger.process(
        make_fill(login=900009, currency="USC", volume=1, spread_points=10, point_value="0.01")
    )
    assert result.credits == ()
    assert result.outcome == "not_earning"


def test_usd_rate_converts_account_currency_costs() -> None:
    # EUR account, usd_rate 1.10: commission EUR 20 -> USD 22; 10% = 2.20.
    result = make_ledger(B2CORE).process(
        make_fill(currency="EUR", usd_rate="1.10", commission="-20.00")
    )
    assert amounts(result) == {("ib_commission", "IB-B"): "2.20"}


SPEC_EXAMPLE_RULES = """
effective_from: "2024-01-01T00:00:00Z"
symbols:
  suffixes: [".m", "-std"]
  groups: {forex: [EURUSD, GBPUSD, USDJPY], metals: [XAUUSD, XAGUSD]}
plans:
  - id: std
    rules:
      - {account_types: ["*"], symbols: [metals], per_lot_usd: "20"}
      - {account_types: [standard], symbols: ["*"], per_lot_usd: "15"}
      - {account_types: [raw_spread], symbols: ["*"], commission_pct: "30"}
      - {account_types: [pro], symbols: [forex], spread_pct: "40", max_usd_per_lot: "10"}
      - {account_types: [standard], symbols: [GBPUSD], per_lot_usd: "9"}
ibs: [{id: IB-1, plan: std, rebate_pct: "0"}]
clients: [{id: C-1, ib: IB-1, verified: true}]
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-1, type: pro}
  - {login: 3, client: C-1, type: raw_spread}
loyalty: {accrual_pct: "0"}
"""


@pytest.mark.parametrize(
    ("login", "symbol", "expected_rule", "amount"),
    [
        (1, "XAUUSD.m", "#1", "20.00"),  # group beats "*"; the suffix is stripped first
        (1, "EURUSD", "#2", "15.00"),  # standard + "*"
        (1, "GBPUSD-std", "#5", "9.00"),  # exact symbol beats everything
        (2, "EURUSD", "#4", "4.00"),  # pro forex: 40% of 10 points x $1 = 4.00
        (3, "EURUSD", "#3", "3.00"),  # raw: 30% of $10 commission
        (2, "XAUUSD", "#1", "20.00"),  # metals group, any account type
    ],
)
def test_rules_match_most_specific_first(
    login: int, symbol: str, expected_rule: str, amount: str
) -> None:
    fill = make_fill(
        login=login, symbol=symbol, spread_points=10, point_value="1", commission="-10.00"
    )
    result = make_ledger(SPEC_EXAMPLE_RULES).process(fill)
    ib = next(c for c in result.credits if c.kind == "ib_commission")
    assert ib.basis["rule"].startswith(expected_rule + " ")
    assert f"{ib.amount:.2f}" == amount


def test_no_matching_rule_pays_nothing_and_says_why() -> None:
    seed = SPEC_EXAMPLE_RULES.replace("type: pro", "type: islamic")
    result = make_ledger(seed).process(make_fill(login=2, symbol="EURUSD"))
    assert result.credits == ()
    assert result.reasons == ("no_rule",)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("2.345", "2.34"),
        ("2.355", "2.36"),
        ("0.005", "0.00"),
        ("0.015", "0.02"),
        ("-2.345", "-2.34"),
    ],
)
def test_rounding_is_half_even_to_the_cent(amount: str, expected: str) -> None:
    assert str(round_cents(Decimal(amount))) == expected


def test_rebate_and_ib_net_sum_to_the_rounded_gross() -> None:
    # 0.33 lots x $1.01 = $0.3333 gross -> 0.33; 33% rebate = 0.1089 -> 0.11; net 0.22.
    seed = AMARKETS.replace('per_lot_usd: "15"', 'per_lot_usd: "1.01"').replace(
        'rebate_pct: "20"', 'rebate_pct: "33"'
    )
    result = make_ledger(seed).process(make_fill(volume=33))
    assert amounts(result) == {("ib_commission", "IB-A"): "0.22", ("client_rebate", "C-1"): "0.11"}


def test_mt5_volume_is_in_ten_thousandths_of_a_lot() -> None:
    # MT5 volume 25000 = 2.5 lots; 2.5 x 15 = 37.50; 20% = 7.50.
    result = make_ledger(AMARKETS).process(make_fill(platform="mt5", volume=25000))
    assert amounts(result) == {("ib_commission", "IB-A"): "30.00", ("client_rebate", "C-1"): "7.50"}
    assert result.credits[0].fill["lots"] == "2.5"

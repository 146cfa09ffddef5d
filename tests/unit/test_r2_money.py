"""SPEC revision 2, sections 3-5: standard lots, per-lot client rebates, (client, IB) rebate
pairs, self-trade up the tree, refunds, reasons, and a basis a partner can redo by hand.

Every number below is worked out in the comment next to it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.eligibility import REASONS
from engine.replay import replay_lines
from engine.seed import SeedError, parse_seed
from schemas import validate
from tests.factories import amounts, fill_line, lots, make_fill, make_ledger

# The SPEC's example seed (section 3), the parts that matter for money: metals pay 20 USD per
# standard lot, the IB one level up gets 20% of the L1 gross. C-2 trades a standard_cent
# account with a 50% rebate override; C-9 is ours, a standard account on IB-1's default 20%.
SPEC_SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
account_types:
  standard_cent: {lot_scale: "0.01"}
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
    upline_override_pct: ["20", "10"]
    min_hold_seconds: 180
    min_points: 30
ibs:
  - {id: IB-M, plan: std, rebate_pct: "0"}
  - {id: IB-1, plan: std, parent: IB-M, rebate_pct: "20", client: C-IB1}
clients:
  - {id: C-2, ib: IB-1, verified: false, rebate_pct: "50"}
  - {id: C-9, ib: IB-1, verified: true}
accounts:
  - {login: 900002, client: C-2, type: standard_cent, live: true}
  - {login: 900009, client: C-9, type: standard}
"""

GOLD = {"symbol": "XAUUSD.m", "open_price": "2000.00", "close_price": "2001.00", "digits": 2}


# -- 1. lot_scale and std_lots ------------------------------------------------------------


def test_one_cent_lot_of_gold_pays_what_the_same_notional_pays_on_a_standard_account() -> None:
    ledger = make_ledger(SPEC_SEED)
    # Cent: 1 lot x 0.01 lot_scale = 0.01 std lots x 20 USD = 0.20 gross;
    # C-2's 50% override: 0.10 rebate, IB-1 keeps 0.20 - 0.10 = 0.10; IB-M: 20% x 0.20 = 0.04.
    cent = ledger.process(make_fill(deal=1, login=900002, volume=lots(1), currency="USC", **GOLD))
    assert amounts(cent) == {
        ("ib_commission", "IB-1"): "0.10",
        ("client_rebate", "C-2"): "0.10",
        ("ib_override", "IB-M"): "0.04",
    }
    # Standard: 0.01 lot x 1 = 0.01 std lots x 20 USD = 0.20 gross, the same as above;
    # C-9 on IB-1's default 20%: 0.04 rebate, IB-1 0.16; IB-M 20% x 0.20 = 0.04.
    std = ledger.process(make_fill(deal=2, login=900009, volume=lots("0.01"), **GOLD))
    assert amounts(std) == {
        ("ib_commission", "IB-1"): "0.16",
        ("client_rebate", "C-9"): "0.04",
        ("ib_override", "IB-M"): "0.04",
    }
    ib = next(c for c in cent.credits if c.kind == "ib_commission")
    assert (ib.basis["gross"], ib.basis["base"]) == ("0.20", "0.01")
    assert {k: ib.basis["inputs"][k] for k in ("lots", "lot_scale", "std_lots")} == {
        "lots": "1",
        "lot_scale": "0.01",
        "std_lots": "0.01",
    }
    assert ib.basis["formula"].startswith("1 lots x 0.01 = 0.01 std lots x 20 USD/lot = 0.20")


CENT_DEFAULTS = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "0"}
account_types:
  micro: {lot_scale: "0.1"}
plans: [{id: p, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}]
ibs: [{id: IB-1, plan: p}]
clients: [{id: C-1, ib: IB-1, verified: true}]
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-1, type: Cent-Pro}
  - {login: 3, client: C-1, type: micro}
  - {login: 4, client: C-1, type: percent_pro}
"""


@pytest.mark.parametrize(
    ("login", "currency", "usd_rate", "paid"),
    [
        (1, "USD", None, "100.00"),  # 10 lots x 1 = 10 std lots x 10 USD = 100.00
        (1, "USC", None, "1.00"),  # a USC account: 10 x 0.01 = 0.1 std lots x 10 = 1.00
        (2, "USD", None, "1.00"),  # "Cent-Pro" has the word cent: 0.1 std lots x 10 = 1.00
        (3, "USD", None, "10.00"),  # the seed's micro: 10 x 0.1 = 1 std lot x 10 = 10.00
        (4, "EUR", "1.1", "100.00"),  # "percent" is no cent type: 10 std lots x 10 = 100.00
    ],
)
def test_lot_scale_comes_from_the_seed_then_cent_types_and_usc(
    login: int, currency: str, usd_rate: str | None, paid: str
) -> None:
    fill = make_fill(login=login, volume=lots(10), currency=currency, usd_rate=usd_rate)
    assert amounts(make_ledger(CENT_DEFAULTS).process(fill)) == {("ib_commission", "IB-1"): paid}


@pytest.mark.parametrize(
    "bad", ['{cent: {lot_scale: "0"}}', '{cent: {lot_scale: "-0.01"}}', '{cent: {scale: "0.01"}}']
)
def test_a_lot_scale_is_a_positive_decimal(bad: str) -> None:
    seed = CENT_DEFAULTS.replace('account_types:\n  micro: {lot_scale: "0.1"}', "")
    with pytest.raises(SeedError, match="account_types"):
        parse_seed(seed + f"account_types: {bad}\n", "types.yaml")


def test_the_per_lot_cap_counts_standard_lots() -> None:
    # SPEC seed rule 4: pro, forex, 40% of spread, capped at 10 USD per std lot. A pro cent
    # account (seed: pro_cent 0.01) trades 50 lots: 0.5 std lots, cap 10 x 0.5 = 5.00 USD.
    # Spread: 100 points x 0.5 USC/point/lot x 50 lots = 2500 USC x 0.01 = 25.00 USD;
    # 40% = 10.00 > 5.00, so the gross is 5.00 (counting raw lots it would be 10.00).
    seed = (
        SPEC_SEED.replace(
            'standard_cent: {lot_scale: "0.01"}',
            'standard_cent: {lot_scale: "0.01"}\n  pro_cent: {lot_scale: "0.01"}',
        ).replace(
            "[pro], symbols: [forex]",
            "[pro, pro_cent], symbols: [forex]",
        )
        + "  - {login: 900003, client: C-9, type: pro_cent}\n"
    )
    fill = make_fill(
        login=900003, volume=lots(50), currency="USC", spread_points=100, point_value="0.5"
    )
    result = make_ledger(seed).process(fill)
    # C-9 on IB-1's 20%: 1.00 rebate, IB-1 4.00; IB-M 20% x 5.00 = 1.00.
    assert amounts(result) == {
        ("ib_commission", "IB-1"): "4.00",
        ("client_rebate", "C-9"): "1.00",
        ("ib_override", "IB-M"): "1.00",
        # loyalty: 10% x 25.00 USD cost = 2.50 JM USD
        ("loyalty_accrual", "C-9"): "2.50",
    }


def test_bonus_turnover_counts_standard_lots() -> None:
    # A 10 USD bonus unlocks at 10 / 2 = 5 std lots. 300 cent lots = 3 std lots: not yet;
    # 200 more = 2 std lots: 5, unlocked.
    seed = SPEC_SEED + (
        "bonuses:\n"
        '  - {login: 900002, bonus_id: B-1, amount_usd: "10", granted_at: "2024-01-01T00:00:00Z"}\n'
    )
    ledger = make_ledger(seed)
    first = ledger.process(make_fill(deal=1, login=900002, volume=lots(300), currency="USC"))
    assert ledger.account(900002).bonuses[0].turnover_lots == Decimal(3)
    assert first.output.events == ()
    second = ledger.process(make_fill(deal=2, login=900002, volume=lots(200), currency="USC"))
    assert [e.event for e in second.output.events] == ["bonus_unlocked"]


# -- 2. client_rebate_usd_per_lot ---------------------------------------------------------

PER_LOT_REBATE = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "0"}
plans:
  - id: p
    rules:
      - {id: fx-10, account_types: ["*"], symbols: ["*"], per_lot_usd: "10",
         client_rebate_usd_per_lot: "3"}
      - {id: gold-2, account_types: ["*"], symbols: [XAUUSD], per_lot_usd: "2",
         client_rebate_usd_per_lot: "5"}
ibs: [{id: IB-1, plan: p, rebate_pct: "20"}]
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-2, ib: IB-1, verified: true, rebate_pct: "50"}
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-2, type: standard}
  - {login: 3, client: C-1, type: standard_cent}
changes:
  - {at: "2024-06-01T00:00:00Z", client: C-1, rebate_status: suspended}
"""


@pytest.mark.parametrize(
    ("login", "symbol", "ib", "rebate", "source"),
    [
        # 2 lots x 10 = 20.00 gross; rebate 2 std lots x 3 USD = 6.00; IB 14.00.
        (1, "EURUSD", "14.00", "6.00", "plan_rule"),
        # cent: 2 x 0.01 = 0.02 std lots: gross 0.20, rebate 0.02 x 3 = 0.06, IB 0.14.
        (3, "EURUSD", "0.14", "0.06", "plan_rule"),
        # gross 2 x 2 = 4.00; 2 x 5 = 10.00 is above the gross: capped at 4.00, IB keeps 0.
        (1, "XAUUSD", None, "4.00", "plan_rule"),
        # C-2's own 50% override of this (client, IB) pair beats the plan: 20.00 x 50% = 10.00.
        (2, "EURUSD", "10.00", "10.00", "client_override"),
    ],
)
def test_a_rebate_quoted_per_lot_counts_std_lots_and_never_exceeds_the_gross(
    login: int, symbol: str, ib: str | None, rebate: str, source: str
) -> None:
    result = make_ledger(PER_LOT_REBATE).process(
        make_fill(login=login, symbol=symbol, volume=lots(2))
    )
    got = amounts(result)
    client = "C-2" if login == 2 else "C-1"
    assert (got.get(("ib_commission", "IB-1")), got[("client_rebate", client)]) == (ib, rebate)
    credit = next(c for c in result.credits if c.kind == "client_rebate")
    assert credit.basis["source"] == source


def test_a_suspended_rebate_pays_zero_and_the_ib_credit_says_so() -> None:
    # After June 1 C-1's rebate is suspended: IB-1 keeps 2 x 10 = 20.00; its credit shows the
    # rebate rate (0) and why.
    fill = make_fill(
        login=1, volume=lots(2), open_time="2024-07-01T10:00:00Z", close_time="2024-07-01T10:10:00Z"
    )
    result = make_ledger(PER_LOT_REBATE).process(fill)
    (ib,) = result.credits
    assert (ib.amount, ib.basis["rebate"]) == (Decimal("20.00"), "0.00")
    assert (ib.basis["rebate_rate"], ib.basis["rebate_source"]) == ("0", "rebate_suspended")
    assert ib.basis["rule_id"] == "fx-10"


# -- 3. rebate overrides belong to the (client, IB) pair -------------------------------------

PAIRS = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "0"}
plans: [{id: p, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}]
ibs:
  - {id: IB-1, plan: p, rebate_pct: "20"}
  - {id: IB-2, plan: p, rebate_pct: "10"}
clients: [{id: C-1, ib: IB-1, verified: true, rebate_pct: "50"}]
accounts: [{login: 900001, client: C-1, type: standard}]
changes:
  - {at: "2024-02-01T00:00:00Z", client: C-1, rebate_status: cancelled}
  - {at: "2024-03-01T00:00:00Z", client: C-1, ib: IB-2}
  - {at: "2024-04-01T00:00:00Z", client: C-1, rebate_pct: "30"}
"""


def _on(day: str, **kw: object) -> dict[str, object]:
    return {"open_time": f"{day}T10:00:00Z", "close_time": f"{day}T10:10:00Z", **kw}


@pytest.mark.parametrize(
    ("day", "ib", "rebate", "source"),
    [
        ("2024-01-15", ("IB-1", "5.00"), "5.00", "client_override"),  # 10.00 x 50%
        ("2024-02-15", ("IB-1", "10.00"), None, "rebate_cancelled"),  # cancelled: 0
        ("2024-03-15", ("IB-2", "9.00"), "1.00", "ib_default"),  # new IB: its 10% default
        ("2024-04-15", ("IB-2", "7.00"), "3.00", "client_override"),  # IB-2's own 30%
    ],
)
def test_a_rebate_override_and_its_status_end_when_the_client_moves(
    day: str, ib: tuple[str, str], rebate: str | None, source: str
) -> None:
    # 1 lot x 10 USD = 10.00 gross every time; the rebate is the pair's.
    result = make_ledger(PAIRS).process(make_fill(volume=lots(1), **_on(day)))
    got = amounts(result)
    assert got[("ib_commission", ib[0])] == ib[1]
    assert got.get(("client_rebate", "C-1")) == rebate
    ib_credit = next(c for c in result.credits if c.kind == "ib_commission")
    assert ib_credit.basis["rebate_source"] == source


def test_a_cancelled_rebate_revived_under_the_same_ib_is_still_a_configuration_error() -> None:
    revived = PAIRS + '  - {at: "2024-05-01T00:00:00Z", client: C-1, rebate_status: cancelled}\n'
    revived += '  - {at: "2024-06-01T00:00:00Z", client: C-1, rebate_status: active}\n'
    with pytest.raises(SeedError, match="cancelled rebate cannot be reactivated"):
        parse_seed(revived, "pairs.yaml")


# -- 4. self_trade_upline -------------------------------------------------------------------

UPLINE_SELF_TRADE = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "0"}
plans:
  - {id: p, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}
  - id: master
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "1"}]
    upline_override_pct: ["20", "10"]
ibs:
  - {id: IB-TOP, plan: master}
  - {id: IB-M, plan: master, parent: IB-TOP, client: C-M}
  - {id: IB-1, plan: p, parent: IB-M}
clients: [{id: C-M, ib: IB-1, verified: true}, {id: C-1, ib: IB-1, verified: true}]
accounts: [{login: 7, client: C-M, type: standard}, {login: 1, client: C-1, type: standard}]
"""


def test_a_master_ib_trading_under_its_sub_ib_earns_no_override_on_it() -> None:
    ledger = make_ledger(UPLINE_SELF_TRADE)
    # C-M (IB-M's own client) trades 1 lot under IB-1: IB-1 10.00 (no rebate); IB-M (L2)
    # would get 20% x 10.00 = 2.00 but it is its own trading; IB-TOP (L3): 10% x 10 = 1.00.
    own = ledger.process(make_fill(deal=1, login=7, volume=lots(1)))
    assert amounts(own) == {("ib_commission", "IB-1"): "10.00", ("ib_override", "IB-TOP"): "1.00"}
    assert (own.outcome, own.reasons) == ("credited", ("self_trade_upline",))
    # Another client of IB-1: IB-M is paid its 2.00.
    other = ledger.process(make_fill(deal=2, login=1, volume=lots(1)))
    assert amounts(other)[("ib_override", "IB-M")] == "2.00"
    assert other.reasons == ()


# -- 5. a positive commission is a refund, not a cost ---------------------------------------

REFUNDS = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
plans: [{id: p, rules: [{account_types: ["*"], symbols: ["*"], commission_pct: "30"}]}]
ibs: [{id: IB-1, plan: p}]
clients: [{id: C-1, ib: IB-1, verified: true}]
accounts: [{login: 900001, client: C-1, type: raw_spread}]
wallets: [{login: 900001, jm_allocated: "3.00", allocated_at: "2024-01-01T00:00:00Z"}]
"""


def test_a_refund_is_no_cost_for_commission_coverage_and_loyalty() -> None:
    ledger = make_ledger(REFUNDS)
    # Charged 4.00: IB 30% x 4.00 = 1.20; coverage min(50% x 4.00 = 2.00, 3.00) = 2.00;
    # loyalty 10% x (4.00 - 2.00) = 0.20.
    charged = ledger.process(make_fill(deal=1, commission="-4.00"))
    assert amounts(charged) == {
        ("ib_commission", "IB-1"): "1.20",
        ("jm_coverage", "900001"): "2.00",
        ("loyalty_accrual", "C-1"): "0.20",
    }
    # Refunded 4.00 with a spread of 10 points x 1 USD x 1 lot = 10.00: the cost is 10.00
    # (not 14.00, not 6.00); the commission rule pays 30% x 0 = nothing;
    # coverage min(5.00, 1.00 left) = 1.00; loyalty 10% x (10.00 - 1.00) = 0.90.
    refunded = ledger.process(
        make_fill(deal=2, commission="4.00", spread_points=10, point_value="1")
    )
    assert amounts(refunded) == {
        ("jm_coverage", "900001"): "1.00",
        ("loyalty_accrual", "C-1"): "0.90",
    }
    coverage = next(c for c in refunded.credits if c.kind == "jm_coverage")
    assert (coverage.basis["jm_balance_before"], coverage.basis["jm_balance_after"]) == ("1", "0")
    assert coverage.basis["inputs"]["commission_paid"] == "0"


# -- 6. reasons -----------------------------------------------------------------------------


def test_every_fill_that_earned_less_says_why_and_the_summary_counts_by_reason() -> None:
    seed = SPEC_SEED + "  - {login: 900100, client: C-9, type: standard, live: false}\n"
    lines = [
        fill_line(deal=1, login=900009),  # 50 points, 10 min: earns in full
        fill_line(deal=1, login=900009),  # the same revision again
        fill_line(deal=2, login=900009, close_time="2024-03-01T10:02:00Z"),  # 120 s < 180 s
        fill_line(deal=3, login=900009, close_price="1.08010"),  # 10 points < 30
        fill_line(deal=4, login=900100),  # demo
        fill_line(deal=5, login=123),  # not attributed
    ]
    written: list[bytes] = []
    numbered = (("f", i, raw) for i, raw in enumerate(lines, 1))
    result = replay_lines(numbered, make_ledger(seed), written.append)
    assert result.summary.by_reason() == {
        "duplicate": 1,
        "min_hold": 1,
        "min_points": 1,
        "demo": 1,
        "unattributed": 1,
    }
    assert set(result.summary.by_reason()) <= set(REASONS)


def test_no_matching_rule_is_the_reason_no_rule() -> None:
    # The SPEC seed's rules cover metals on any type, and standard, raw_spread and pro
    # accounts: an "islamic" account trading EURUSD matches none of them.
    seed = SPEC_SEED + "  - {login: 900200, client: C-9, type: islamic}\n"
    result = make_ledger(seed).process(make_fill(login=900200))
    assert result.reasons == ("no_rule",)


# -- 7. the complete basis ------------------------------------------------------------------

BASIS = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
plans:
  - id: p
    rules: [{id: pro-fx, account_types: [pro], symbols: ["*"], spread_pct: "40"}]
    upline_override_pct: ["25"]
ibs:
  - {id: IB-M, plan: p}
  - {id: IB-1, plan: p, parent: IB-M, rebate_pct: "20"}
clients: [{id: C-1, ib: IB-1, verified: true}]
accounts: [{login: 900001, client: C-1, type: pro}]
"""


def test_a_partner_can_redo_every_credit_from_the_credit_alone() -> None:
    # EUR account, usd_rate 1.1: spread 12 points x 0.9 EUR x 2 lots = 21.6 EUR = 23.76 USD.
    # IB-1: 40% x 23.76 = 9.504 -> 9.50 gross; 20% rebate = 1.90; IB-1 keeps 7.60.
    # IB-M: 25% x 9.50 = 2.375 -> 2.38 (half even: 2.375 -> 2.38, the 7 is odd).
    # Commission -6 EUR = 6.60 USD; cost 23.76 + 6.60 = 30.36; loyalty 10% = 3.036 -> 3.04.
    fill = make_fill(
        volume=lots(2), currency="EUR", usd_rate="1.1", spread_points=12, point_value="0.9",
        commission="-6.00",
    )  # fmt: skip
    result = make_ledger(BASIS).process(fill)
    assert amounts(result) == {
        ("ib_commission", "IB-1"): "7.60",
        ("client_rebate", "C-1"): "1.90",
        ("ib_override", "IB-M"): "2.38",
        ("loyalty_accrual", "C-1"): "3.04",
    }
    for credit in result.credits:
        assert credit.basis["inputs"] == {
            "currency": "EUR",
            "usd_rate": "1.1",
            "lots": "2",
            "lot_scale": "1",
            "std_lots": "2",
            "spread_points": 12,
            "point_value": "0.9",
            "commission": "-6",
            "spread_cost": "21.6",
            "commission_paid": "6",
        }
        validate("credit.v1", credit.to_dict("0.1.0"))
    ib = next(c for c in result.credits if c.kind == "ib_commission")
    assert {k: ib.basis[k] for k in ("rule_id", "rate", "base", "gross")} == {
        "rule_id": "pro-fx",
        "rate": "40",
        "base": "23.76",
        "gross": "9.50",
    }
    assert (ib.basis["rebate_rate"], ib.basis["rebate_source"]) == ("20", "ib_default")
    override = next(c for c in result.credits if c.kind == "ib_override")
    assert override.basis["rule_id"] == "pro-fx"


def test_the_ib_credit_shows_a_zero_default_rebate() -> None:
    seed = BASIS.replace('rebate_pct: "20"', 'rebate_pct: "0"')
    fill = make_fill(spread_points=10, point_value="1")  # 10 x 1 x 1 = 10 USD; 40% = 4.00
    ib = next(c for c in make_ledger(seed).process(fill).credits if c.kind == "ib_commission")
    assert (ib.amount, ib.basis["rebate_rate"], ib.basis["rebate_source"]) == (
        Decimal("4.00"),
        "0",
        "ib_default",
    )

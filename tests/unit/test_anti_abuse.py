"""SPEC 4.3: min hold, min points and self trades withhold L1, the rebate and the overrides."""

from __future__ import annotations

import pytest

from tests.factories import amounts, lots, make_fill, make_ledger

SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: p
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]
    upline_override_pct: ["20"]
    min_hold_seconds: 180
    min_points: 30
ibs:
  - {id: IB-UP, plan: p}
  - {id: IB-1, plan: p, parent: IB-UP, rebate_pct: "20", client: C-IB}
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-IB, ib: IB-1, verified: true}
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-IB, type: standard}
loyalty: {accrual_pct: "10"}
"""


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        # held 179 s < 180 s
        ({"close_time": "2024-03-01T10:02:59Z"}, "min_hold"),
        # moved |1.08029 - 1.08000| x 10^5 = 29 points < 30
        ({"close_price": "1.08029"}, "min_points"),
        # the account belongs to the IB's own client C-IB
        ({"login": 2}, "self_trade"),
    ],
)
def test_withheld_commission_pays_no_rebate_and_no_override(
    overrides: dict[str, object], reason: str
) -> None:
    result = make_ledger(SEED).process(
        make_fill(**{"login": 1, "volume": lots(1), "commission": "-7.00", **overrides})
    )
    assert result.reason == reason
    kinds = {c.kind for c in result.credits}
    assert kinds.isdisjoint({"ib_commission", "client_rebate", "ib_override"})
    # Loyalty is the client's, not the IB's: 10% of the $7 commission still accrues.
    assert kinds == {"loyalty_accrual"}


def test_exactly_at_the_limits_is_paid() -> None:
    # held exactly 180 s and moved exactly 30 points: both limits are "at least".
    result = make_ledger(SEED).process(
        make_fill(
            login=1,
            volume=lots(1),
            open_time="2024-03-01T10:00:00Z",
            close_time="2024-03-01T10:03:00Z",
            close_price="1.08030",
        )
    )
    assert amounts(result) == {
        ("ib_commission", "IB-1"): "8.00",
        ("client_rebate", "C-1"): "2.00",
        ("ib_override", "IB-UP"): "2.00",
    }


def test_self_trades_can_be_allowed_by_the_plan() -> None:
    seed = SEED.replace("min_points: 30", "min_points: 30\n    exclude_self_trades: false")
    result = make_ledger(seed).process(make_fill(login=2, volume=lots(1)))
    assert amounts(result)[("ib_commission", "IB-1")] == "8.00"


def test_demo_and_unknown_logins_earn_nothing_and_are_counted() -> None:
    seed = SEED.replace(
        "{login: 2, client: C-IB, type: standard}",
        "{login: 2, client: C-IB, type: standard, live: false}",
    )
    ledger = make_ledger(seed)
    demo = ledger.process(make_fill(login=2, commission="-5.00"))
    unknown = ledger.process(make_fill(login=777, deal=2, commission="-5.00"))
    assert (demo.outcome, demo.reason, demo.credits) == ("not_earning", "demo", ())
    assert (unknown.outcome, unknown.reason, unknown.credits) == (
        "not_earning",
        "unattributed",
        (),
    )


def test_opening_deals_are_acknowledged_and_ignored() -> None:
    result = make_ledger(SEED).process(make_fill(entry="in", volume=lots(5)))
    assert (result.outcome, result.credits) == ("ignored", ())

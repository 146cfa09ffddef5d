"""SPEC 4.3-4.5 and 3: multi-level overrides, depth, cycles; client rebates over time."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.ledger import Ledger
from engine.seed import parse_seed
from tests.factories import amounts, change, lots, make_fill, make_ledger

TREE = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: top
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "1"}]
    upline_override_pct: ["5", "3", "2"]
  - id: mid
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "2"}]
    upline_override_pct: ["20", "10"]
  - id: std
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]
    upline_override_pct: ["50"]
ibs:
  - {id: IB-TOP, plan: top}
  - {id: IB-MID, plan: mid, parent: IB-TOP}
  - {id: IB-1, plan: std, parent: IB-MID, rebate_pct: "25"}
clients: [{id: C-1, ib: IB-1, verified: true}]
accounts: [{login: 900001, client: C-1, type: standard}]
loyalty: {accrual_pct: "0"}
"""


def test_three_level_tree_each_upline_uses_its_own_plans_pct() -> None:
    # L1: 10 lots x $10 = $100 gross; 25% rebate = $25; IB-1 keeps $75.
    # L2 (IB-MID, plan mid, upline_override_pct[0] = 20%): 20% x 100 = $20, on top.
    # L3 (IB-TOP, plan top, upline_override_pct[1] = 3%): 3% x 100 = $3, on top.
    result = make_ledger(TREE).process(make_fill(volume=lots(10)))
    assert amounts(result) == {
        ("ib_commission", "IB-1"): "75.00",
        ("client_rebate", "C-1"): "25.00",
        ("ib_override", "IB-MID"): "20.00",
        ("ib_override", "IB-TOP"): "3.00",
    }
    levels = {c.beneficiary_id: c.basis["level"] for c in result.credits}
    assert levels == {"IB-1": 1, "C-1": 1, "IB-MID": 2, "IB-TOP": 3}
    top = next(c for c in result.credits if c.beneficiary_id == "IB-TOP")
    assert top.basis["formula"] == "L3: 100.00 L1 gross x 3% = 3.00"


def test_depth_limit_cuts_overrides_above_it() -> None:
    ledger = Ledger.from_seed(parse_seed(TREE), depth_limit=2)  # L1 and L2 only
    result = ledger.process(make_fill(volume=lots(10)))
    assert ("ib_override", "IB-TOP") not in amounts(result)
    assert amounts(result)[("ib_override", "IB-MID")] == "20.00"


def test_cycle_in_the_ib_tree_is_a_configuration_error_never_a_loop() -> None:
    ledger = make_ledger(TREE)
    ledger.book.extend([change("2024-06-01T00:00:00Z", "ib", "IB-TOP", parent="IB-1")])
    # Before the change the tree is fine...
    assert ledger.process(make_fill(deal=1)).outcome == "credited"
    # ...after it, IB-1 -> IB-MID -> IB-TOP -> IB-1 is reported, not walked forever.
    with pytest.raises(ConfigError) as err:
        ledger.process(
            make_fill(deal=2, open_time="2024-07-01T10:00:00Z", close_time="2024-07-01T10:10:00Z")
        )
    assert err.value.reason == "ib_cycle"
    assert "IB-1 -> IB-MID -> IB-TOP -> IB-1" in str(err.value)


def test_cycle_in_a_seed_fails_the_load_with_the_line() -> None:
    from engine.seed import SeedError, parse_seed

    bad = TREE.replace("{id: IB-TOP, plan: top}", "{id: IB-TOP, plan: top, parent: IB-1}")
    with pytest.raises(SeedError, match="IB cycle"):
        parse_seed(bad, "tree.yaml")


def test_suspended_upline_is_skipped_and_the_walk_goes_on() -> None:
    ledger = make_ledger(TREE)
    ledger.book.extend([change("2024-01-01T00:00:00Z", "ib", "IB-MID", status="suspended")])
    result = ledger.process(make_fill(volume=lots(10)))
    assert ("ib_override", "IB-MID") not in amounts(result)
    assert amounts(result)[("ib_override", "IB-TOP")] == "3.00"


REBATES = """
effective_from: "2024-01-01T00:00:00Z"
plans: [{id: p, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}]
ibs: [{id: IB-1, plan: p, rebate_pct: "20"}]
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-2, ib: IB-1, verified: true, rebate_pct: "50"}
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-2, type: standard}
loyalty: {accrual_pct: "0"}
changes:
  - {at: "2024-03-01T00:00:00Z", client: C-1, rebate_pct: "30"}
  - {at: "2024-04-01T00:00:00Z", client: C-1, rebate_status: suspended}
  - {at: "2024-05-01T00:00:00Z", client: C-1, rebate_status: active}
  - {at: "2024-06-01T00:00:00Z", client: C-1, rebate_status: cancelled}
"""


def _closing(day: str, **kw: object) -> dict[str, object]:
    return {"open_time": f"{day}T10:00:00Z", "close_time": f"{day}T10:10:00Z", **kw}


@pytest.mark.parametrize(
    ("day", "rebate", "ib", "source"),
    [
        ("2024-02-15", "20.00", "80.00", "ib_default"),  # IB default 20% of $100
        ("2024-03-15", "30.00", "70.00", "client_override"),  # override from March 1
        ("2024-04-15", None, "100.00", None),  # suspended: no rebate, IB keeps it all
        ("2024-05-15", "30.00", "70.00", "client_override"),  # resumed with the override
        ("2024-06-15", None, "100.00", None),  # cancelled
    ],
)
def test_client_rebate_follows_the_rules_in_force_at_close_time(
    day: str, rebate: str | None, ib: str, source: str | None
) -> None:
    result = make_ledger(REBATES).process(make_fill(login=1, volume=lots(10), **_closing(day)))
    got = amounts(result)
    assert got.get(("client_rebate", "C-1")) == rebate
    assert got[("ib_commission", "IB-1")] == ib
    if source:
        assert (
            next(c for c in result.credits if c.kind == "client_rebate").basis["source"] == source
        )


def test_client_override_beats_ib_default() -> None:
    result = make_ledger(REBATES).process(make_fill(login=2, volume=lots(10)))
    assert amounts(result)[("client_rebate", "C-2")] == "50.00"


def test_a_rate_change_between_two_fills_is_never_retroactive() -> None:
    # Fill 1 closes before the change and is settled at 20%; the change (30% from Mar 1) is
    # loaded after fill 1 was credited; fill 2 closes after it and gets 30%. Replaying fill 1
    # later still gives 20%, because rules are looked up at close_time.
    seed = REBATES.split("changes:", maxsplit=1)[0]
    ledger = make_ledger(seed)
    first = ledger.process(make_fill(deal=1, login=1, volume=lots(10), **_closing("2024-02-15")))
    ledger.book.extend([change("2024-03-01T00:00:00Z", "client", "C-1", rebate_pct="30")])
    second = ledger.process(make_fill(deal=2, login=1, volume=lots(10), **_closing("2024-03-15")))
    assert amounts(first)[("client_rebate", "C-1")] == "20.00"
    assert amounts(second)[("client_rebate", "C-1")] == "30.00"
    replayed = make_ledger(seed)
    replayed.book.extend([change("2024-03-01T00:00:00Z", "client", "C-1", rebate_pct="30")])
    again = replayed.process(make_fill(deal=1, login=1, volume=lots(10), **_closing("2024-02-15")))
    assert amounts(again) == amounts(first)


def test_cancelled_rebate_cannot_be_reactivated() -> None:
    from engine.seed import SeedError, parse_seed

    bad = REBATES + '  - {at: "2024-07-01T00:00:00Z", client: C-1, rebate_status: active}\n'
    with pytest.raises(SeedError, match="cancelled rebate cannot be reactivated"):
        parse_seed(bad, "rebates.yaml")


def test_moving_a_client_to_another_ib_applies_from_its_effective_time() -> None:
    seed = (
        REBATES.split("changes:", maxsplit=1)[0].replace(
            'ibs: [{id: IB-1, plan: p, rebate_pct: "20"}]',
            'ibs: [{id: IB-1, plan: p, rebate_pct: "20"}, {id: IB-2, plan: p, rebate_pct: "0"}]',
        )
        + 'changes:\n  - {at: "2024-03-01T00:00:00Z", client: C-1, ib: IB-2}\n'
    )
    ledger = make_ledger(seed)
    before = ledger.process(make_fill(deal=1, login=1, volume=lots(1), **_closing("2024-02-15")))
    after = ledger.process(make_fill(deal=2, login=1, volume=lots(1), **_closing("2024-03-15")))
    assert ("ib_commission", "IB-1") in amounts(before)
    assert amounts(after) == {("ib_commission", "IB-2"): "10.00"}

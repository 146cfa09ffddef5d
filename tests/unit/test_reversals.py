"""SPEC 4.10 and 7: update/delete of a credited deal, re-delivery idempotency."""

from __future__ import annotations

from decimal import Decimal

from tests.factories import amounts, lots, make_fill, make_ledger

SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
plans: [{id: p, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}]
ibs: [{id: IB-1, plan: p, rebate_pct: "20"}]
clients: [{id: C-1, ib: IB-1, verified: true}]
accounts: [{login: 900001, client: C-1, type: standard}]
wallets: [{login: 900001, jm_allocated: "100.00", allocated_at: "2024-01-01T00:00:00Z"}]
"""


def test_update_of_a_credited_deal_reverses_then_recomputes() -> None:
    ledger = make_ledger(SEED)
    # add: 2 lots x $10 = $20 -> IB 16, client 4; cost $6 -> coverage 3.00, accrual 0.30.
    original = ledger.process(make_fill(volume=lots(2), commission="-6.00"))
    assert amounts(original) == {
        ("ib_commission", "IB-1"): "16.00",
        ("client_rebate", "C-1"): "4.00",
        ("jm_coverage", "900001"): "3.00",
        ("loyalty_accrual", "C-1"): "0.30",
    }
    assert ledger.account(900001).jm_balance == Decimal("97.00")
    # update: the dealer corrects the volume to 1 lot: everything above is reversed, then
    # 1 lot x $10 = $10 -> IB 8, client 2; cost $3 -> coverage 1.50, accrual 0.15.
    updated = ledger.process(make_fill(event="update", volume=lots(1), commission="-3.00"))
    reversals = [c for c in updated.credits if c.kind == "reversal"]
    assert {c.reverses for c in reversals} == {c.credit_id for c in original.credits}
    assert all(r.amount == -o.amount for r, o in zip(reversals, original.credits, strict=True))
    fresh = [c for c in updated.credits if c.kind != "reversal"]
    assert {(c.kind, f"{c.amount:.2f}") for c in fresh} == {
        ("ib_commission", "8.00"),
        ("client_rebate", "2.00"),
        ("jm_coverage", "1.50"),
        ("loyalty_accrual", "0.15"),
    }
    # The coverage taken by the reversed revision went back before the new one was taken.
    assert ledger.account(900001).jm_balance == Decimal("98.50")
    assert ledger.rewards["C-1"] == Decimal("0.15")


def test_delete_reverses_everything_and_returns_the_coverage() -> None:
    ledger = make_ledger(SEED)
    original = ledger.process(make_fill(volume=lots(2), commission="-6.00"))
    deleted = ledger.process(make_fill(event="delete", volume=lots(2), commission="-6.00"))
    assert all(c.kind == "reversal" for c in deleted.credits)
    assert sum(c.amount for c in original.credits + deleted.credits) == 0
    assert ledger.account(900001).jm_balance == Decimal("100.00")
    assert ledger.rewards.get("C-1", 0) == 0
    # A second delete of the same deal has nothing left to reverse.
    again = ledger.process(make_fill(event="delete", volume=lots(1), commission="-6.00"))
    assert (again.outcome, again.reasons, again.credits) == ("not_earning", (), ())


def test_redelivered_revision_returns_the_same_credits_and_changes_nothing() -> None:
    ledger = make_ledger(SEED)
    fill = make_fill(volume=lots(2), commission="-6.00")
    first = ledger.process(fill)
    balance = ledger.account(900001).jm_balance
    second = ledger.process(fill)
    assert second.outcome == "duplicate"
    assert second.credits == first.credits
    assert ledger.account(900001).jm_balance == balance


def test_credit_ids_are_deterministic_per_revision() -> None:
    a = make_ledger(SEED).process(make_fill(volume=lots(2)))
    b = make_ledger(SEED).process(make_fill(volume=lots(2)))
    c = make_ledger(SEED).process(make_fill(volume=lots(3)))
    assert [x.credit_id for x in a.credits] == [x.credit_id for x in b.credits]
    assert {x.credit_id for x in a.credits}.isdisjoint(x.credit_id for x in c.credits)


def test_fields_outside_fill_v1_do_not_change_the_revision() -> None:
    assert make_fill(bridge_seq=1).revision == make_fill(bridge_seq=2).revision
    assert make_fill(volume=1).revision != make_fill(volume=2).revision


def test_an_update_to_entry_in_takes_back_what_stands() -> None:
    ledger = make_ledger(SEED)
    # 1 lot x $10 = $10 -> IB 8.00, client 2.00 (no commission: no coverage, no accrual).
    ledger.process(make_fill(volume=lots(1)))
    # The dealer re-books the deal as an opening one: an "in" earns nothing, so what stood is
    # reversed, as for a delete, and nothing stands after it.
    undone = ledger.process(make_fill(event="update", entry="in", volume=lots(1)))
    assert (undone.outcome, undone.reasons) == ("credited", ())
    assert amounts(undone) == {("reversal", "IB-1"): "-8.00", ("reversal", "C-1"): "-2.00"}
    assert ledger.journals[("mt4-live-1", 1001)].standing is None


def test_every_revision_is_journaled_even_when_it_earns_nothing() -> None:
    # SPEC 7 r2: an "in" deal, a withheld add and an unknown login all find themselves again.
    ledger = make_ledger(SEED)
    first = [
        make_fill(deal=1, entry="in", close_time="2024-03-01T10:00:00Z"),
        make_fill(deal=2, login=424242),
        make_fill(deal=3, volume=0),
    ]
    assert [ledger.process(f).outcome for f in first] == ["ignored", "not_earning", "not_earning"]
    assert [ledger.process(f).outcome for f in first] == ["duplicate"] * 3

"""engine/explain.py on a hand-checked scenario (arithmetic in tests/explain_scenario.py)."""

from __future__ import annotations

import orjson

from engine.eligibility import REASONS
from engine.explain import (
    REASON_WORDS,
    DealExplanation,
    Step,
    explain_deal,
    explain_login,
    replay_for_explain,
)
from engine.ledger import Ledger
from engine.seed import parse_seed
from tests.explain_scenario import SEED, SERVER, fill_lines
from tests.factories import make_fill_dict


def _explain(deal: int) -> DealExplanation:
    ledger = Ledger.from_seed(parse_seed(SEED, "explain-seed.yaml"))
    lines = [("f", n, line) for n, line in enumerate(fill_lines(), 1)]
    return explain_deal(replay_for_explain(lines, ledger, deal=(SERVER, deal)), SERVER, deal)


def _step(steps: tuple[Step, ...], name: str) -> Step:
    return next(s for s in steps if s.name == name)


def test_every_reason_has_words() -> None:
    assert set(REASON_WORDS) == set(REASONS)


def test_an_earning_deal_states_its_rules_and_numbers() -> None:
    first = _explain(1).revisions[0]
    steps = first.steps
    rules = _step(steps, "rules").text
    assert "plan desk" in rules and "(id R-GOLD)" in rules and "lot_scale 1)" in rules
    assert "Client rebate rate 25% of the L1 gross: ib_default" in rules
    costs = _step(steps, "costs").text
    # 2 lots x 1 = 2 standard lots; commission -8.00 -> 8 paid; cost (0 + 8) x 1 = 8 USD.
    assert "2 lots x lot_scale 1 = 2 standard lots" in costs
    assert "= 8 USD to trade" in costs
    eligibility = _step(steps, "eligibility").text
    assert "min_hold: held 600 s, plan minimum 180 s: passed" in eligibility
    assert "min_points: not required by plan desk" in eligibility  # desk sets no min_points
    commission = _step(steps, "commission")
    # 2 std lots x 10 = 20.00 gross - 5.00 rebate = 15.00 net.
    assert "= 20.00 gross - 5.00 client rebate = 15.00" in commission.text
    assert commission.numbers == {"gross": "20.00", "rebate": "5.00", "net": "15.00"}
    assert "20.00 x 25% = 5.00" in _step(steps, "rebate").text
    override = _step(steps, "override")
    assert "IB IB-TOP: L2: 20.00 L1 gross x 10% = 2.00" in override.text
    coverage = _step(steps, "coverage")
    # min(8 x 50% = 4.00, balance 3.00) = 3.00; balance 3.00 -> 0.00.
    assert coverage.numbers == {
        "covered": "3.00",
        "jm_balance_before": "3",
        "jm_balance_after": "0",
    }
    # (8 - 3.00) x 10% = 0.50 JM USD.
    assert "= 0.50 JM USD" in _step(steps, "loyalty").text
    # Every credit is named with its id.
    outcome = _step(steps, "outcome").text
    for credit in first.settlement.credits:
        assert credit.credit_id in outcome


def test_a_min_hold_deal_states_the_held_seconds_and_the_minimum() -> None:
    (only,) = _explain(2).revisions
    eligibility = _step(only.steps, "eligibility")
    # 10:00:00 -> 10:02:00 = 120 s against the plan's 180 s.
    assert "min_hold: held 120 s, plan minimum 180 s: FAILED" in eligibility.text
    assert eligibility.numbers["min_hold"] == {
        "held_seconds": 120.0,
        "min_hold_seconds": 180,
        "result": "failed",
    }
    assert "withheld (min_hold" in eligibility.text
    assert not any(s.name == "commission" for s in only.steps)
    # No JM left (deal 1 took all 3.00), so the 4.00 cost accrues 4.00 x 10% = 0.40.
    assert "No JM USD coverage" in _step(only.steps, "coverage").text
    assert "= 0.40 JM USD" in _step(only.steps, "loyalty").text
    assert only.to_dict()["reasons"] == ["min_hold"]


def test_a_self_trade_upline_deal_names_the_withheld_upline() -> None:
    (only,) = _explain(3).revisions
    override = _step(only.steps, "override")
    assert override.text == (
        "Override L2 to IB IB-TOP withheld (self_trade_upline): client C-TOP is IB IB-TOP's"
        " own client."
    )
    # 1 lot x 10 = 10.00 gross; the direct IB is still paid 10.00 - 2.50 = 7.50.
    assert _step(only.steps, "commission").numbers["net"] == "7.50"
    assert "self_trade_upline" in _step(only.steps, "outcome").text


def test_a_cent_account_shows_lot_scale_and_std_lots() -> None:
    (only,) = _explain(4).revisions
    assert "cent live account (lot_scale 0.01)" in _step(only.steps, "rules").text
    costs = _step(only.steps, "costs")
    # 1 cent lot x 0.01 = 0.01 standard lots.
    assert "1 lots x lot_scale 0.01 = 0.01 standard lots" in costs.text
    assert (costs.numbers["lot_scale"], costs.numbers["std_lots"]) == ("0.01", "0.01")
    # 0.01 x 10 = 0.10 gross; 25% = 0.025 -> 0.02 (half even); net 0.08; L2 10% = 0.01.
    assert _step(only.steps, "commission").numbers == {
        "gross": "0.10",
        "rebate": "0.02",
        "net": "0.08",
    }
    assert "= 0.01 USD" in _step(only.steps, "override").text
    assert "0.01 standard lots added to bonus B-CENT" in _step(only.steps, "bonus").text


def test_an_update_shows_the_reversals_and_the_new_credits() -> None:
    explained = _explain(1)
    first, update = explained.revisions
    reversal = _step(update.steps, "reversal")
    reversed_ids = [c.credit_id for c in first.settlement.credits]
    assert [r["credit_id"] for r in reversal.numbers["reversed"]] == reversed_ids
    assert [r["amount"] for r in reversal.numbers["reversed"]] == [
        "15.00",
        "5.00",
        "2.00",
        "3.00",
        "0.50",
    ]
    assert reversal.text.startswith("This revision is an update")
    assert "goes back to the login's allocations" in reversal.text
    # 3 lots x 10 = 30.00 gross - 7.50 rebate = 22.50; override 10% x 30.00 = 3.00.
    assert _step(update.steps, "commission").numbers == {
        "gross": "30.00",
        "rebate": "7.50",
        "net": "22.50",
    }
    assert "= 3.00 USD" in _step(update.steps, "override").text
    # The 3.00 returned is covered again: min(4.00, 3.00) = 3.00.
    assert _step(update.steps, "coverage").numbers["covered"] == "3.00"
    # What stands: 22.50 + 7.50 + 3.00 + 3.00 = 36.00 USD and 0.50 JM USD.
    assert {k: f"{v:.2f}" for k, v in explained.totals.items()} == {
        "USD": "36.00",
        "JMUSD": "0.50",
    }


def test_login_shows_wallet_allocations_and_bonus_progress() -> None:
    ledger = Ledger.from_seed(parse_seed(SEED, "explain-seed.yaml"))
    lines = [("f", n, line) for n, line in enumerate(fill_lines(), 1)]
    cent = explain_login(replay_for_explain(lines, ledger, login=1003), 1003)
    data = cent.to_dict()
    assert data["bonuses"] == [
        {
            "bonus_id": "B-CENT",
            "amount_usd": "2",
            "std_lots_done": "0.01",  # one cent lot
            "std_lots_needed": "1",  # 2 USD / 2
            "unlocked": False,
        }
    ]
    assert [d["deal"] for d in data["deals"]] == [4]

    ledger = Ledger.from_seed(parse_seed(SEED, "explain-seed.yaml"))
    a = explain_login(replay_for_explain(lines, ledger, login=1001), 1001).to_dict()
    # C-A: 0.50 (deal 1) + 0.40 (deal 2) - 0.50 (reversed) + 0.50 (update) = 0.90 JM USD.
    assert a["wallet"]["reward_jm"] == {"C-A": "0.90"}
    # 3.00 allocated, all of it covering deal 1's update.
    assert a["wallet"]["jm_balance"] == "0.00"
    assert [(d["deal"], d["revisions"]) for d in a["deals"]] == [(1, 2), (2, 1)]


def test_a_redelivered_revision_is_told_as_a_duplicate_and_changes_no_total() -> None:
    ledger = Ledger.from_seed(parse_seed(SEED, "explain-seed.yaml"))
    first = fill_lines()[0]
    lines = [("f", 1, first), ("f", 2, first)]
    explained = explain_deal(replay_for_explain(lines, ledger, deal=(SERVER, 1)), SERVER, 1)
    original, again = explained.revisions
    (step,) = again.steps
    assert again.settlement.outcome == "duplicate"
    for credit in original.settlement.credits:
        assert credit.credit_id in step.text
    # Counted once: 15.00 + 5.00 + 2.00 + 3.00 USD and 0.50 JM USD (deal 1 in the scenario).
    assert {k: f"{v:.2f}" for k, v in explained.totals.items()} == {
        "USD": "25.00",
        "JMUSD": "0.50",
    }


def test_a_direct_client_is_told_no_ib_is_due_and_still_accrues() -> None:
    seed = SEED.replace(
        "accounts:\n",
        "  - {id: C-D, verified: true}\naccounts:\n  - {login: 1009, client: C-D, type: standard}\n",
    )
    ledger = Ledger.from_seed(parse_seed(seed, "explain-seed.yaml"))
    line = orjson.dumps(make_fill_dict(deal=77, position=77, login=1009, commission="-2.00"))
    explained = explain_deal(
        replay_for_explain([("f", 1, line)], ledger, deal=(SERVER, 77)), SERVER, 77
    )
    (only,) = explained.revisions
    assert "a direct client (no IB): no commission" in _step(only.steps, "rules").text
    assert not any(s.name in ("eligibility", "commission") for s in only.steps)
    # 2.00 commission paid, no JM allocated: accrual 2.00 x 10% = 0.20 JM USD.
    assert "= 0.20 JM USD" in _step(only.steps, "loyalty").text

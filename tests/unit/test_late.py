"""Late back-office changes (SPEC 3 r2, engine/late.py): which logins a change touches, and
one login's re-settlement (undo all, redo all in close-time order), checked by hand."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from engine import __version__
from engine.credits import Credit
from engine.late import (
    LATE_CHANGE,
    SettledDeal,
    resettle_login,
    resettle_revision,
    too_late,
    touched_logins,
)
from engine.ledger import Ledger
from engine.rules import Change
from engine.seed import parse_seed
from engine.state import AccountState, JmAllocation
from schemas import validate
from tests.factories import make_fill


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- which logins a change touches ---------------------------------------------------------------

# IB-M <- IB-1; IB-2 on its own plan `ten`. C-1 (IB-1) trades on 1 and 2, C-2 (IB-2) on 3, C-3
# is direct on 4 until it moves under IB-1 in May, C-4 (direct, never moved) on 5.
TREE = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - {id: std, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "15"}]}
  - {id: ten, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}
ibs:
  - {id: IB-M, plan: std}
  - {id: IB-1, plan: std, parent: IB-M}
  - {id: IB-2, plan: ten}
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-2, ib: IB-2, verified: true}
  - {id: C-3, verified: true}
  - {id: C-4, verified: true}
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-1, type: standard}
  - {login: 3, client: C-2, type: standard}
  - {login: 4, client: C-3, type: standard}
  - {login: 5, client: C-4, type: standard}
changes:
  - {at: "2024-05-01T00:00:00Z", client: C-3, ib: IB-1}
"""
AT = _t("2024-03-01T00:00:00Z")


@pytest.mark.parametrize(
    ("subject", "ident", "fields", "logins"),
    [
        pytest.param("account", "4", {"live": False}, {4}, id="account_changed"),
        pytest.param("client", "C-1", {"ib": "IB-2"}, {1, 2}, id="client_moved"),
        pytest.param("client", "C-2", {"rebate_pct": Decimal(50)}, {3}, id="rebate_set"),
        pytest.param("client", "C-4", {"verified": True}, {5}, id="client_verified"),
        pytest.param("client", "C-9", {"verified": True}, set(), id="client_registered"),
        # IB-M is above IB-1: C-1's logins, and C-3's, which is under IB-1 from May on.
        pytest.param("ib", "IB-M", {"plan": "ten"}, {1, 2, 4}, id="ib_changed_upline"),
        pytest.param("ib", "IB-1", {"rebate_pct": Decimal(30)}, {1, 2, 4}, id="ib_changed"),
        pytest.param("ib", "IB-2", {"status": "suspended"}, {3}, id="ib_changed_other"),
        pytest.param("plan", "ten", {"upline_override_pct": ["5"]}, {3}, id="plan_of_ib_2"),
        pytest.param("loyalty", "", {"coverage_pct": "40"}, {1, 2, 3, 4, 5}, id="loyalty"),
    ],
)
def test_touched_logins_per_change_type(
    subject: str, ident: str, fields: dict[str, object], logins: set[int]
) -> None:
    book = parse_seed(TREE).rulebook()
    assert touched_logins(book, Change(AT, subject, ident, fields)) == logins


def test_a_move_reaches_the_logins_under_the_new_parent_too() -> None:
    # IB-2 moves under IB-1: a change of IB-1 later touches C-2's login 3 through IB-2.
    book = parse_seed(TREE).rulebook()
    book.extend([Change(AT, "ib", "IB-2", {"parent": "IB-1"})])
    assert touched_logins(book, Change(AT, "ib", "IB-1", {"rebate_pct": Decimal(5)})) == {
        1, 2, 3, 4
    }  # fmt: skip


def test_too_late_is_the_correction_window() -> None:
    now = _t("2024-03-08T00:00:00Z")
    assert not too_late(now - timedelta(hours=168), now, 168)  # exactly the window: in
    assert too_late(now - timedelta(hours=168, seconds=1), now, 168)


# -- an IB move, re-settled ----------------------------------------------------------------------

MOVE = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - {id: std, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "15"}]}
  - {id: ten, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]}
ibs:
  - {id: IB-1, plan: std, rebate_pct: "20"}
  - {id: IB-2, plan: ten, rebate_pct: "20"}
clients:
  - {id: C-1, ib: IB-1, verified: true}
accounts:
  - {login: 900001, client: C-1, type: standard}
"""


def _by_kind(credits: tuple[Credit, ...]) -> list[tuple[str, str, Decimal]]:
    return [(c.kind, c.beneficiary_id, c.amount) for c in credits]


def test_a_late_client_move_reverses_and_recomputes_the_fill() -> None:
    book = parse_seed(MOVE).rulebook()
    ledger = Ledger(book)
    fill = make_fill()  # 1 lot EURUSD closed 2024-03-01T10:10, no cost: no coverage/loyalty
    first = ledger.process(fill)
    # Under IB-1: 1 lot x 15 = 15.00 gross; 20% = 3.00 to the client, 15.00 - 3.00 = 12.00.
    assert _by_kind(first.credits) == [
        ("ib_commission", "IB-1", Decimal("12.00")),
        ("client_rebate", "C-1", Decimal("3.00")),
    ]
    # The back office moved C-1 to IB-2 at 09:00, before the fill; the engine learns it now.
    book.extend([Change(_t("2024-03-01T09:00:00Z"), "client", "C-1", {"ib": "IB-2"})])
    deal = SettledDeal(fill, fill.revision, first.standing)
    result = resettle_login([deal], book, ledger.account(900001), "bo-7")

    assert result is not None
    (resettled,) = result.deals
    credits = resettled.output.credits
    # Reversals of what stood, then under IB-2: 1 lot x 10 = 10.00; 20% = 2.00; 10 - 2 = 8.00.
    assert _by_kind(credits) == [
        ("reversal", "IB-1", Decimal("-12.00")),
        ("reversal", "C-1", Decimal("-3.00")),
        ("ib_commission", "IB-2", Decimal("8.00")),
        ("client_rebate", "C-1", Decimal("2.00")),
    ]
    assert [c.reverses for c in credits[:2]] == [c.credit_id for c in first.credits]
    assert all(c.basis["reason"] == LATE_CHANGE for c in credits)
    assert resettled.revision == resettle_revision(fill.revision, "bo-7")
    assert {c.fill["revision"] for c in credits} == {resettled.revision}
    assert resettled.standing is not None
    assert resettled.standing.credits == credits[2:]  # what stands now: the recomputed ones
    for c in credits:
        validate("credit.v1", c.to_dict(__version__))  # credit.v1 stays v1
    # Deterministic: the same deal and change give the same ids (a rerun is recognised).
    again = resettle_login([deal], book, ledger.account(900001), "bo-7")
    assert again is not None
    assert [c.credit_id for c in again.deals[0].output.credits] == [c.credit_id for c in credits]


def test_a_change_that_settles_nothing_differently_emits_nothing() -> None:
    book = parse_seed(MOVE).rulebook()
    ledger = Ledger(book)
    fill = make_fill()
    first = ledger.process(fill)
    # IB-2's rebate changes: C-1 is IB-1's client, its fill earns the same.
    book.extend([Change(_t("2024-03-01T09:00:00Z"), "ib", "IB-2", {"rebate_pct": Decimal(50)})])
    deal = SettledDeal(fill, fill.revision, first.standing)
    assert resettle_login([deal], book, ledger.account(900001), "bo-8") is None


# -- coverage: undo all, then redo all in close-time order -----------------------------------------

# A direct client (no IB commission): only JM USD coverage (50%) and loyalty accrual (10%).
# Its account is a demo account until 10:30, when it turns live (known on time).
COVERAGE = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - {id: std, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "15"}]}
clients:
  - {id: C-5, verified: true}
accounts:
  - {login: 900005, client: C-5, type: standard, live: false}
changes:
  - {at: "2024-03-01T10:30:00Z", account: 900005, live: true}
"""
# Each fill costs 16.00 USD (commission -16.00): coverage wants 16 x 50% = 8.00.
FILL_A = {
    "deal": 1,
    "position": 1,
    "login": 900005,
    "commission": "-16.00",
    "open_time": "2024-03-01T10:00:00Z",
    "close_time": "2024-03-01T10:10:00Z",
}
FILL_B = {"deal": 2, "position": 2, "login": 900005, "commission": "-16.00",
          "open_time": "2024-03-01T11:00:00Z", "close_time": "2024-03-01T11:10:00Z"}  # fmt: skip
LIVE_EARLIER = Change(_t("2024-03-01T09:00:00Z"), "account", "900005", {"live": True})


def _with_jm(ledger: Ledger) -> None:
    allocated = _t("2024-02-01T00:00:00Z")
    ledger.accounts[900005] = AccountState(
        900005, (JmAllocation("alloc-1", allocated, Decimal(10)),)
    )


def _net(credits: list[Credit]) -> dict[tuple[int, str, str], Decimal]:
    net: dict[tuple[int, str, str], Decimal] = defaultdict(Decimal)
    for c in credits:
        kind = c.basis.get("reversed_kind", c.kind) if c.kind == "reversal" else c.kind
        net[(c.fill["deal"], kind, c.beneficiary_id)] += c.amount
    return {k: v for k, v in net.items() if v}


def test_coverage_is_split_as_if_the_change_had_come_on_time() -> None:
    book = parse_seed(COVERAGE).rulebook()
    ledger = Ledger(book)
    _with_jm(ledger)
    a, b = make_fill(**FILL_A), make_fill(**FILL_B)
    settled_a, settled_b = ledger.process(a), ledger.process(b)
    # A: demo, nothing. B: min(8.00, balance 10.00) = 8.00 covered, balance 10 -> 2;
    # accrual (16.00 - 8.00) x 10% = 0.80.
    assert settled_a.credits == ()
    assert _by_kind(settled_b.credits) == [
        ("jm_coverage", "900005", Decimal("8.00")),
        ("loyalty_accrual", "C-5", Decimal("0.80")),
    ]
    assert ledger.account(900005).jm_balance == Decimal(2)

    # Late: the account was live from 09:00. On time, A would have covered min(8, 10) = 8.00
    # (balance 2) and B min(8, 2) = 2.00 (balance 0). Settling A alone against today's balance
    # would give A 2.00 and leave B its 8.00: the reverse split. Undo B first (balance back to
    # 10), then redo A, then B.
    book.extend([LIVE_EARLIER])
    deals = [SettledDeal(b, b.revision, settled_b.standing), SettledDeal(a, a.revision, None)]
    result = resettle_login(deals, book, ledger.account(900005), "bo-9")
    assert result is not None
    assert [r.deal.fill.deal for r in result.deals] == [1, 2]  # close-time order
    out_a, out_b = (r.output.credits for r in result.deals)
    # A: coverage 8.00; accrual (16.00 - 8.00) x 10% = 0.80.
    assert _by_kind(out_a) == [
        ("jm_coverage", "900005", Decimal("8.00")),
        ("loyalty_accrual", "C-5", Decimal("0.80")),
    ]
    # B: its 8.00 and 0.80 reversed; coverage min(8.00, 2.00) = 2.00; (16 - 2) x 10% = 1.40.
    assert _by_kind(out_b) == [
        ("reversal", "900005", Decimal("-8.00")),
        ("reversal", "C-5", Decimal("-0.80")),
        ("jm_coverage", "900005", Decimal("2.00")),
        ("loyalty_accrual", "C-5", Decimal("1.40")),
    ]
    assert result.account.jm_balance == Decimal(0)
    # Reward wallet: B's -0.80 and +1.40, A's +0.80.
    deltas = [d for r in result.deals for _, d in r.reward_deltas]
    assert sum(deltas, Decimal(0)) == Decimal("1.40")

    # The same as the offline replay, which knows the change from the start.
    offline = Ledger(parse_seed(COVERAGE).rulebook())
    offline.book.extend([LIVE_EARLIER])
    _with_jm(offline)
    on_time = [*offline.process(a).credits, *offline.process(b).credits]
    late = [*settled_b.credits, *out_a, *out_b]
    assert _net(late) == _net(on_time)
    assert offline.account(900005) == result.account

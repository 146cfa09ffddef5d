"""crm-event.v1 (SPEC 3 r2 "Live attribution"): each event type becomes the change the admin
command of that name makes; malformed and contradicting events are refused with their reason;
applied by `at`, the events give the credits the same history written as a seed gives."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import changes
from engine.crm import (
    EVENT_TYPES,
    REASONS,
    CrmEventError,
    apply_event_lines,
    check_event,
    check_window,
    decode_event,
)
from engine.errors import ConfigError
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.rules import Change, RuleBook
from engine.seed import parse_seed
from tests.crm_factories import (
    BASE_SEED,
    SCENARIO_EVENTS,
    SCENARIO_FILLS,
    SCENARIO_SEED_CHANGES,
    SCENARIO_TOTALS,
    crm_event,
    crm_line,
)
from tests.factories import amounts, lots, make_fill

AT = "2024-03-02T10:15:00Z"
T = datetime.fromisoformat(AT)


def base_ledger(seed: str = BASE_SEED) -> Ledger:
    return Ledger.from_seed(parse_seed(seed, "crm-base.yaml"))


def checked(line: bytes, book: RuleBook | None = None) -> Any:
    return check_event(decode_event(line), book or base_ledger().book)


def apply(ledger: Ledger, *lines: bytes) -> None:
    result = apply_event_lines(
        [("events", i, line) for i, line in enumerate(lines, 1)], ledger.book
    )
    assert result.problems == []


def trade(ledger: Ledger, login: int, n_lots: int, close: str = "2024-03-02T12:00:00Z") -> Any:
    opened = (datetime.fromisoformat(close) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    deal = len(ledger.journals) + 1
    return ledger.process(
        make_fill(deal=deal, position=deal, login=login, volume=lots(n_lots),
                  open_time=opened, close_time=close)
    )  # fmt: skip


# -- each event type is the admin command's change -----------------------------------------------


def test_the_spec_example_is_a_client_of_ib_1_and_earns_ib_1_its_commission() -> None:
    line = (
        b'{"schema": "crm-event.v1", "event_id": "bo-7731", "type": "client_registered",'
        b' "at": "2024-03-02T10:15:00Z", "client": "C-88", "ref_code": "32071", "verified": true}'
    )
    result = checked(line)
    assert result.change == Change(T, "client", "C-88", {"verified": True, "ib": "IB-1"})
    assert result.direct_client is None
    ledger = base_ledger()
    apply(ledger, line, crm_line("account_opened", "2024-03-02T10:16:00Z", login=900088,
                                 client="C-88", account_type="standard", currency="USD",
                                 live=True))  # fmt: skip
    # 2 lots EURUSD at 15 USD/lot = 30.00 L1 gross; IB-1's default rebate 20% = 6.00 to C-88,
    # so IB-1 earns 30.00 - 6.00 = 24.00; IB-M (one up, plan std) 10% x 30.00 = 3.00.
    assert amounts(trade(ledger, 900088, 2)) == {
        ("ib_commission", "IB-1"): "24.00",
        ("client_rebate", "C-88"): "6.00",
        ("ib_override", "IB-M"): "3.00",
    }


def test_an_ib_registered_under_a_partner_code_earns_and_pays_its_parent() -> None:
    register = crm_line("ib_registered", "2024-03-02T10:00:00Z", ib="IB-9", partner_code="55555",
                        parent_code="32071", plan="gold", rebate_pct="10", client="C-IB9")  # fmt: skip
    result = checked(register)
    assert result.change == Change(
        datetime.fromisoformat("2024-03-02T10:00:00Z"),
        "ib",
        "IB-9",
        {"plan": "gold", "partner_code": "55555", "parent": "IB-1",
         "rebate_pct": Decimal("10"), "client": "C-IB9"},
    )  # fmt: skip
    ledger = base_ledger()
    apply(
        ledger,
        register,
        crm_line("client_registered", client="C-99", ref_code="55555", verified=False),
        crm_line("account_opened", "2024-03-02T10:16:00Z", login=900099, client="C-99",
                 account_type="standard", currency="USD", live=True),
    )  # fmt: skip
    # 1 lot on gold at 20 USD/lot = 20.00; IB-9's 10% rebate = 2.00 -> IB-9 18.00;
    # IB-1 (L2, plan std) 10% x 20.00 = 2.00; IB-M is L3 and std has no L3 override.
    assert amounts(trade(ledger, 900099, 1)) == {
        ("ib_commission", "IB-9"): "18.00",
        ("client_rebate", "C-99"): "2.00",
        ("ib_override", "IB-1"): "2.00",
    }


@pytest.mark.parametrize(
    ("ref_code", "why"),
    [("77777", "unknown_ref_code"), (None, "no_ref_code"), ("", "no_ref_code")],
)
def test_an_unknown_or_absent_ref_code_makes_a_direct_client_and_says_why(
    ref_code: str | None, why: str
) -> None:
    line = orjson.dumps(
        {**crm_event("client_registered", client="C-77", verified=True), "ref_code": ref_code}
    )
    result = checked(line)
    assert result.change == Change(T, "client", "C-77", {"verified": True})
    assert result.direct_client == why
    ledger = base_ledger()
    apply(ledger, line, crm_line("account_opened", "2024-03-02T10:16:00Z", login=900077,
                                 client="C-77", account_type="standard", currency="USD",
                                 live=True))  # fmt: skip
    assert trade(ledger, 900077, 2).credits == ()  # no IB, and no cost for loyalty


def test_an_ib_without_a_partner_code_answers_to_its_id() -> None:
    result = checked(crm_line("client_registered", client="C-5", ref_code="IB-2", verified=True))
    assert result.change.fields == {"verified": True, "ib": "IB-2"}


@pytest.mark.parametrize(
    ("line", "subject", "ident", "fields"),
    [
        pytest.param(crm_line("client_verified", client="C-1"),
                     "client", "C-1", {"verified": True}, id="client_verified"),
        pytest.param(crm_line("account_opened", login=900002, client="C-1", account_type="pro",
                              currency="EUR", live=False),
                     "account", "900002", {"client": "C-1", "type": "pro", "live": False},
                     id="account_opened"),
        pytest.param(crm_line("account_changed", login=900001, account_type="raw_spread"),
                     "account", "900001", {"type": "raw_spread"}, id="account_changed-type"),
        pytest.param(crm_line("account_changed", login=900001, live=False),
                     "account", "900001", {"live": False}, id="account_changed-live"),
        pytest.param(crm_line("client_moved", client="C-1", ib="IB-2"),
                     "client", "C-1", {"ib": "IB-2"}, id="client_moved"),
        pytest.param(crm_line("rebate_set", client="C-1", pct="35"),
                     "client", "C-1", {"rebate_pct": Decimal(35)}, id="rebate_set-pct"),
        pytest.param(crm_line("rebate_set", client="C-1", status="suspended"),
                     "client", "C-1", {"rebate_status": "suspended"}, id="rebate_set-status"),
        pytest.param(crm_line("rebate_set", client="C-1", pct="5", status="active"),
                     "client", "C-1", {"rebate_pct": Decimal(5), "rebate_status": "active"},
                     id="rebate_set-both"),
        pytest.param(crm_line("ib_changed", ib="IB-1", plan="gold", rebate_pct="25"),
                     "ib", "IB-1", {"plan": "gold", "rebate_pct": Decimal(25)},
                     id="ib_changed-plan-rebate"),
        pytest.param(crm_line("ib_changed", ib="IB-2", parent_code="10001"),
                     "ib", "IB-2", {"parent": "IB-M"}, id="ib_changed-parent_code"),
        pytest.param(crm_line("ib_changed", ib="IB-1", status="suspended"),
                     "ib", "IB-1", {"status": "suspended"}, id="ib_changed-status"),
    ],
)  # fmt: skip
def test_each_event_is_one_effective_dated_change(
    line: bytes, subject: str, ident: str, fields: dict[str, Any]
) -> None:
    assert checked(line).change == Change(T, subject, ident, fields)


def test_ib_changed_with_a_null_parent_code_makes_a_top_ib() -> None:
    line = orjson.dumps({**crm_event("ib_changed", ib="IB-1"), "parent_code": None})
    assert checked(line).change == Change(T, "ib", "IB-1", {"parent": None})


def test_events_and_admin_commands_share_their_builders() -> None:
    # The admin command of the same name goes through engine.changes too: same Change.
    book = base_ledger().book
    assert checked(crm_line("client_moved", client="C-1", ib="IB-2"), book).change == (
        changes.move_client(book, T, "C-1", "IB-2")
    )
    assert checked(crm_line("rebate_set", client="C-1", status="cancelled"), book).change == (
        changes.set_rebate(book, T, "C-1", status="cancelled")
    )


@pytest.mark.parametrize(
    ("line", "before", "after"),
    [
        # 2 lots at 15 = 30.00: 20% default -> C-1 6.00 / IB-1 24.00; IB-M 3.00 throughout.
        pytest.param(crm_line("rebate_set", client="C-1", pct="50"),
                     ("24.00", "6.00"), ("15.00", "15.00"), id="rebate 50%: 15.00 / 15.00"),
        pytest.param(crm_line("rebate_set", client="C-1", status="suspended"),
                     ("24.00", "6.00"), ("30.00", None), id="suspended: IB-1 keeps 30.00"),
    ],
)  # fmt: skip
def test_a_change_applies_from_its_at_never_before(
    line: bytes, before: tuple[str, str | None], after: tuple[str, str | None]
) -> None:
    ledger = base_ledger()
    apply(ledger, line)  # at 2024-03-02T10:15:00Z
    for close, (ib_1, c_1) in (("2024-03-02T10:14:59Z", before), ("2024-03-02T10:15:00Z", after)):
        paid = amounts(trade(ledger, 900001, 2, close))
        assert paid.get(("ib_commission", "IB-1")) == ib_1
        assert paid.get(("client_rebate", "C-1")) == c_1
        assert paid[("ib_override", "IB-M")] == "3.00"


def test_checking_an_event_does_not_touch_the_book() -> None:
    book = base_ledger().book
    before = book.resolve(900001, T)
    checked(crm_line("client_moved", client="C-1", ib="IB-2"), book)
    checked(crm_line("client_registered", client="C-88", ref_code="32071", verified=True), book)
    assert book.resolve(900001, T) == before
    assert book.get("client", "C-88", T) is None


# -- malformed and contradicting events: refused with their reason -------------------------------


@pytest.mark.parametrize(
    ("line", "reason", "named"),
    [
        pytest.param(b'{"schema": "crm-event.v1", "type": ', "malformed_json", "not JSON",
                     id="not JSON"),
        pytest.param(b"\xff\xfe", "malformed_json", "not JSON", id="not UTF-8"),
        pytest.param(b"[1, 2]", "schema", "$", id="not an object"),
        pytest.param(crm_line("client_registered", verified=True), "schema", "$.client",
                     id="missing client"),
        pytest.param(crm_line("account_opened", login=900005, client="C-1",
                              account_type="standard", live=True),
                     "schema", "$.currency", id="missing currency"),
        pytest.param(orjson.dumps({k: v for k, v in crm_event("client_verified", client="C-1")
                                   .items() if k != "at"}),
                     "schema", "$.at", id="missing at"),
        pytest.param(orjson.dumps({k: v for k, v in crm_event("client_verified", client="C-1")
                                   .items() if k != "event_id"}),
                     "schema", "$.event_id", id="missing event_id"),
        pytest.param(crm_line("client_verified", "2024-03-02T10:15:00+00:00", client="C-1"),
                     "schema", "$.at", id="at without Z"),
        pytest.param(crm_line("rebate_set", client="C-1"), "schema", "at least one of pct",
                     id="rebate_set changing nothing"),
        pytest.param(crm_line("rebate_set", client="C-1", pct="101"), "schema", "$.pct",
                     id="pct above 100"),
        pytest.param(crm_line("account_opened", login="900005", client="C-1",
                              account_type="standard", currency="USD", live=True),
                     "schema", "$.login", id="login as a string"),
        pytest.param(crm_line("client_deleted", client="C-1"), "unknown_type", "type",
                     id="unknown type"),
        pytest.param(crm_line("client_moved", client="C-1", ib="IB-404"), "unknown_ib",
                     "client_moved.ib: unknown ib 'IB-404'", id="moved to an unknown IB"),
        pytest.param(crm_line("ib_registered", ib="IB-9", partner_code="55555",
                              parent_code="99999", plan="std"),
                     "unknown_ib", "ib_registered.parent_code", id="unknown parent code"),
        pytest.param(crm_line("ib_changed", ib="IB-404", status="suspended"), "unknown_ib",
                     "ib_changed.ib", id="changed an unknown IB"),
        pytest.param(crm_line("ib_changed", ib="IB-1", plan="platinum"), "unknown_plan",
                     "ib_changed.plan: unknown plan 'platinum'", id="unknown plan"),
        pytest.param(crm_line("account_changed", login=4040, live=False), "unknown_login",
                     "account_changed.login: unknown login '4040'", id="unknown login"),
        pytest.param(crm_line("account_opened", login=900005, client="C-404",
                              account_type="standard", currency="USD", live=True),
                     "unknown_client", "account_opened.client", id="account of unknown client"),
        pytest.param(crm_line("rebate_set", client="C-404", pct="10"), "unknown_client",
                     "rebate_set.client", id="rebate of unknown client"),
        pytest.param(crm_line("ib_changed", ib="IB-M", parent_code="32071"), "cycle",
                     "ib_changed.parent_code: would create an IB cycle at 2024-03-02T10:15:00Z: "
                     "IB-M -> IB-1 -> IB-M", id="a cycle"),
        pytest.param(crm_line("ib_changed", ib="IB-1", parent_code="32071"), "cycle",
                     "IB-1 -> IB-1", id="its own parent"),
        pytest.param(crm_line("client_registered", client="C-40", ref_code="40400",
                              verified=True),
                     "inactive_ib", "client_registered.ref_code: partner code '40400' is IB "
                     "'IB-X''s, terminated", id="ref code of an inactive IB"),
        pytest.param(crm_line("ib_registered", ib="IB-9", partner_code="55555",
                              parent_code="40400", plan="std"),
                     "inactive_ib", "ib_registered.parent_code", id="parent code of an inactive IB"),
        pytest.param(crm_line("client_registered", client="C-1", verified=True),
                     "already_exists", "client 'C-1' already exists", id="client twice"),
        pytest.param(crm_line("account_opened", login=900001, client="C-1",
                              account_type="standard", currency="USD", live=True),
                     "already_exists", "login '900001' already exists", id="login twice"),
        pytest.param(crm_line("ib_registered", ib="IB-9", partner_code="32071", plan="std"),
                     "already_exists", "partner code '32071' already belongs to IB 'IB-1'",
                     id="partner code taken"),
        pytest.param(crm_line("ib_registered", ib="IB-1", partner_code="55555", plan="std"),
                     "already_exists", "ib 'IB-1' already exists", id="IB twice"),
    ],
)  # fmt: skip
def test_a_bad_event_is_refused_with_its_reason_naming_the_field(
    line: bytes, reason: str, named: str
) -> None:
    with pytest.raises(CrmEventError) as refused:
        checked(line)
    assert refused.value.reason == reason
    assert reason in REASONS
    assert named in str(refused.value)


def test_a_cancelled_rebate_cannot_be_revived_under_the_same_ib() -> None:
    ledger = base_ledger()
    cancel = crm_line("rebate_set", "2024-03-03T00:00:00Z", client="C-1", status="cancelled")
    resume = crm_line("rebate_set", "2024-03-04T00:00:00Z", client="C-1", status="active")
    result = apply_event_lines([("e", 1, cancel), ("e", 2, resume)], ledger.book)
    assert result.applied == 1
    [problem] = result.problems
    assert (problem.line, problem.reason) == (2, "revived_rebate")
    assert "rebate_set.status: client C-1: a cancelled rebate cannot be reactivated" in (
        problem.message
    )


def test_a_move_ends_the_pair_override_so_the_new_ib_default_applies() -> None:
    ledger = base_ledger()
    apply(
        ledger,
        crm_line("rebate_set", "2024-03-03T00:00:00Z", client="C-1", pct="50"),
        crm_line("rebate_set", "2024-03-04T00:00:00Z", client="C-1", status="cancelled"),
        crm_line("client_moved", "2024-03-05T00:00:00Z", client="C-1", ib="IB-2"),
    )
    # Under IB-2 (gold, 20 USD/lot, default rebate 0%): 2 lots = 40.00, all to IB-2; the 50%
    # override and its cancellation belonged to (C-1, IB-1).
    assert amounts(trade(ledger, 900001, 2, "2024-03-05T12:00:00Z")) == {
        ("ib_commission", "IB-2"): "40.00"
    }
    # So a rebate set under IB-2 is no revival: 25% of 40.00 = 10.00 to C-1, IB-2 30.00.
    apply(ledger, crm_line("rebate_set", "2024-03-06T00:00:00Z", client="C-1", pct="25",
                           status="active"))  # fmt: skip
    assert amounts(trade(ledger, 900001, 2, "2024-03-06T12:00:00Z")) == {
        ("ib_commission", "IB-2"): "30.00",
        ("client_rebate", "C-1"): "10.00",
    }


def test_a_partner_code_names_one_ib_whichever_change_sets_it() -> None:
    book = base_ledger().book
    with pytest.raises(changes.ChangeRefused) as refused:  # what `admin set-ib-payout` calls
        changes.change_ib(book, T, "IB-2", {"partner_code": "32071"})
    assert refused.value.reason == "already_exists"
    assert changes.change_ib(book, T, "IB-1", {"partner_code": "32071"}).fields == {
        "partner_code": "32071"
    }  # its own code again is no conflict


def test_unknown_properties_of_an_event_are_ignored() -> None:
    line = crm_line("client_verified", client="C-1", source="salesforce", batch=7)
    assert checked(line).change == Change(T, "client", "C-1", {"verified": True})


def test_an_event_that_a_later_seed_change_contradicts_is_refused_and_changes_nothing() -> None:
    # The seed resumes C-1's rebate on 2024-04-01; a cancellation effective before it would
    # make that resume a revival: refused when folded, and the book stays as it was.
    seed = (
        BASE_SEED
        + 'changes:\n  - {at: "2024-04-01T00:00:00Z", client: C-1, '
        + ("rebate_status: active}\n")
    )
    ledger = base_ledger(seed)
    cancel = crm_line("rebate_set", "2024-03-03T00:00:00Z", client="C-1", status="cancelled")
    result = apply_event_lines([("e", 1, cancel)], ledger.book)
    assert [p.reason for p in result.problems] == ["revived_rebate"]
    later = datetime.fromisoformat("2024-03-10T00:00:00Z")
    client = ledger.book.get("client", "C-1", later)
    assert client is not None and client.rebate_status == "active"


def test_extend_leaves_the_book_unchanged_when_a_batch_does_not_fold() -> None:
    book = base_ledger().book
    day = datetime.fromisoformat("2024-03-03T00:00:00Z")
    batch = [
        Change(day, "client", "C-1", {"rebate_status": "cancelled"}),
        Change(day + timedelta(days=1), "client", "C-1", {"rebate_status": "active"}),
    ]
    with pytest.raises(ConfigError):
        book.extend(batch)
    client = book.get("client", "C-1", day + timedelta(days=2))
    assert client is not None and client.rebate_status == "active"
    book.extend(batch[:1])  # the cancellation alone folds
    client = book.get("client", "C-1", day + timedelta(days=2))
    assert client is not None and client.rebate_status == "cancelled"


def test_a_change_older_than_the_correction_window_is_too_late() -> None:
    event = decode_event(crm_line("client_verified", client="C-1"))
    check_window(event, T + timedelta(hours=168), 168)  # exactly the window: still in
    with pytest.raises(CrmEventError) as refused:
        check_window(event, T + timedelta(hours=168, seconds=1), 168)
    assert refused.value.reason == "too_late"
    assert refused.value.field == "at"


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_event_type_requires_its_fields(type_: str) -> None:
    with pytest.raises(CrmEventError) as refused:
        decode_event(crm_line(type_))
    assert refused.value.reason == "schema"
    assert "is a required property" in str(refused.value)


# -- offline: events applied by `at` equal the same history written as a seed ------------------


def _credits(ledger: Ledger) -> list[bytes]:
    out: list[bytes] = []
    replay_lines([("fills", i, f) for i, f in enumerate(SCENARIO_FILLS, 1)], ledger, out.append)
    return out


def _totals(lines: list[bytes]) -> dict[tuple[str, str], str]:
    totals: dict[tuple[str, str], Decimal] = {}
    for line in lines:
        credit = orjson.loads(line)
        key = (credit["kind"], credit["beneficiary"]["id"])
        totals[key] = totals.get(key, Decimal(0)) + Decimal(credit["amount"])
    return {key: f"{amount:.2f}" for key, amount in totals.items()}


def test_the_scenario_pays_what_the_hand_arithmetic_says() -> None:
    ledger = base_ledger()
    result = apply_event_lines(
        [("events", i, orjson.dumps(e)) for i, e in enumerate(SCENARIO_EVENTS, 1)], ledger.book
    )
    assert (result.applied, result.problems) == (len(SCENARIO_EVENTS), [])
    assert result.direct_clients == {"unknown_ref_code": 1}
    assert _totals(_credits(ledger)) == SCENARIO_TOTALS


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(SCENARIO_EVENTS), repeats=st.lists(st.sampled_from(SCENARIO_EVENTS)))
def test_events_in_any_file_order_and_redelivered_give_the_seeds_credits(
    order: list[dict[str, Any]], repeats: list[dict[str, Any]]
) -> None:
    as_seed = _credits(base_ledger(BASE_SEED + SCENARIO_SEED_CHANGES))
    ledger = base_ledger()
    lines = [orjson.dumps(e) for e in [*order, *repeats]]
    result = apply_event_lines(
        [("events", i, line) for i, line in enumerate(lines, 1)], ledger.book
    )
    assert result.problems == []
    assert result.duplicates == len(repeats)  # the same event_id is applied once
    assert _credits(ledger) == as_seed

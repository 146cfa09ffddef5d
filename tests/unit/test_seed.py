"""SPEC 3: the seed format (YAML and JSON), effective-dated changes, precise errors."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import yaml

from engine.seed import SeedError, load_seed, parse_seed

SPEC_EXAMPLE = Path("sample/spec-example-seed.yaml")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_spec_example_seed_loads_with_its_changes() -> None:
    seed = load_seed(SPEC_EXAMPLE)
    book = seed.rulebook()
    attribution = book.resolve(900001, _at("2024-03-01T00:00:00Z"))
    assert attribution is not None
    assert attribution.ib is not None and attribution.ib.id == "IB-1"
    assert [u.ib.id for u in attribution.uplines] == ["IB-M"]
    c1 = book.get("client", "C-1", _at("2024-10-15T00:00:00Z"))
    assert c1.rebate_pct == Decimal("30")
    assert book.get("client", "C-1", _at("2024-11-15T00:00:00Z")).rebate_status == "suspended"
    assert seed.reward_wallets == {"C-1": Decimal("100.00")}
    assert [(login, a.remaining) for login, a in seed.allocations] == [(900001, Decimal("50.00"))]
    assert seed.bonuses[0][1].required_lots == Decimal("250")


def test_a_json_seed_is_the_same_as_its_yaml() -> None:
    data = yaml.safe_load(SPEC_EXAMPLE.read_text())
    as_json = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    assert parse_seed(as_json, "seed.json") == load_seed(SPEC_EXAMPLE)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # an IB naming a plan that does not exist: file, line and field are named
        (
            lambda s: s.replace("{id: IB-1, plan: std,", "{id: IB-1, plan: gold,"),
            r"seed\.yaml:\d+: ibs\[1\]\.plan: unknown plan 'gold'",
        ),
        (
            lambda s: s.replace("client: C-2, type: standard_cent", "client: C-9, type: x"),
            r"accounts\[1\]\.client: unknown client 'C-9'",
        ),
        (
            lambda s: s.replace('per_lot_usd: "20"}', 'per_lot_usd: "20", spread_pct: "5"}'),
            r"plans\[0\]\.rules\[0\]",
        ),
        (lambda s: s.replace("effective_from:", "efective_from:"), r"seed\.yaml:\d+"),
        (
            lambda s: s.replace('at: "2024-10-01T00:00:00Z"', 'at: "2024-10-01"'),
            r"changes\[0\]\.at",
        ),
        (lambda s: s.replace("groups: {forex", "groups: [forex"), r"seed\.yaml:\d+: .*YAML"),
    ],
)
def test_bad_seeds_fail_with_file_line_and_field(mutate: object, message: str) -> None:
    text = mutate(SPEC_EXAMPLE.read_text())  # type: ignore[operator]
    with pytest.raises(SeedError, match=message):
        parse_seed(text, "seed.yaml")


def test_error_line_points_at_the_offending_item() -> None:
    text = SPEC_EXAMPLE.read_text().replace("{id: IB-1, plan: std,", "{id: IB-1, plan: gold,")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "plan: gold" in s)
    with pytest.raises(SeedError) as err:
        parse_seed(text, "seed.yaml")
    assert err.value.line == line


def test_a_change_dated_before_a_later_one_still_reaches_it() -> None:
    # Changes are folded in time order whatever their order in the file: the suspension on
    # Nov 1 keeps the 30% set on Oct 1 for when the rebate resumes.
    text = (
        SPEC_EXAMPLE.read_text()
        + '  - {at: "2024-12-01T00:00:00Z", client: C-1, rebate_status: active}\n'
    )
    book = parse_seed(text, "seed.yaml").rulebook()
    assert book.get("client", "C-1", _at("2024-12-02T00:00:00Z")).rebate_pct == Decimal("30")


def test_plan_and_loyalty_changes() -> None:
    text = SPEC_EXAMPLE.read_text() + (
        '  - {at: "2024-07-01T00:00:00Z", plan: std, min_hold_seconds: 60}\n'
        '  - {at: "2024-07-01T00:00:00Z", loyalty: {accrual_pct: "12"}}\n'
    )
    book = parse_seed(text, "seed.yaml").rulebook()
    assert book.get("plan", "std", _at("2024-06-30T00:00:00Z")).min_hold_seconds == 180
    assert book.get("plan", "std", _at("2024-07-01T00:00:00Z")).min_hold_seconds == 60
    assert book.get("plan", "std", _at("2024-07-01T00:00:00Z")).rules  # rules kept
    assert book.loyalty(_at("2024-07-02T00:00:00Z")).accrual_pct == Decimal("12")
    assert book.loyalty(_at("2024-06-02T00:00:00Z")).accrual_pct == Decimal("10")


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(SeedError, match=r"no-such\.yaml: cannot read"):
        load_seed("no-such.yaml")


def test_an_ib_cycle_fails_the_seed_even_with_no_account_under_it() -> None:
    # The seed and `admin` share one change validator (engine.rules.change_refusal): a cycle
    # is refused where it is written, not only once an account's attribution runs into it.
    text = SPEC_EXAMPLE.read_text().replace(
        "ibs:\n",
        "ibs:\n  - {id: IB-X, plan: std, parent: IB-Y}\n  - {id: IB-Y, plan: std, parent: IB-X}\n",
        1,
    )
    with pytest.raises(SeedError, match=r"IB cycle at 2024-01-01T00:00:00Z: IB-X -> IB-Y -> IB-X"):
        parse_seed(text, "seed.yaml")

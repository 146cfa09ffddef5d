"""SPEC 3/6 [r2]: an IB's payout kind, hold and plan tiers in the seed, and the payout fold."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.errors import ConfigError
from engine.payouts import Tier, parse_tiers, payout_period, payouts_due
from engine.rules import RuleBook
from engine.seed import SeedError, parse_seed
from schemas import SchemaError, validate
from tests.factories import book, change
from tests.payout_factories import TIER_SEED, credits_for, fill_of

T0 = "2024-01-01T00:00:00Z"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _seed(ib_line: str = "", tiers: str = "") -> str:
    """TIER_SEED with extra keys on IB-1 and a tier table on plan `flat`."""
    text = TIER_SEED.replace(
        '{id: IB-1, plan: flat, rebate_pct: "20"}',
        f'{{id: IB-1, plan: flat, rebate_pct: "20"{ib_line}}}',
    )
    if tiers:
        text = text.replace('per_lot_usd: "10"}', f'per_lot_usd: "10"}}\n    tiers:\n{tiers}')
    return text


# -- the seed keys -----------------------------------------------------------------------------


def test_ib_payout_keys_default_to_today() -> None:
    ib = parse_seed(_seed()).rulebook().get("ib", "IB-1", _at(T0))
    assert (ib.partner_code, ib.payout, ib.hold_hours) == ("IB-1", "hourly", 0)
    assert parse_seed(_seed()).rulebook().get("plan", "flat", _at(T0)).tiers == ()


def test_ib_payout_keys_and_tiers_from_the_seed() -> None:
    seed = _seed(
        ', partner_code: "32071", payout: weekly, hold_hours: 48',
        '      - {from_std_lots: "100", per_lot_bonus_usd: "1"}\n'
        '      - {from_std_lots: "500", per_lot_bonus_usd: "2.5"}',
    )
    rules = parse_seed(seed).rulebook()
    ib = rules.get("ib", "IB-1", _at(T0))
    assert (ib.partner_code, ib.payout, ib.hold_hours) == ("32071", "weekly", 48)
    assert rules.get("plan", "flat", _at(T0)).tiers == (
        Tier(Decimal(100), Decimal(1)),
        Tier(Decimal(500), Decimal("2.5")),
    )


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            '      - {from_std_lots: "500", per_lot_bonus_usd: "2"}\n'
            '      - {from_std_lots: "100", per_lot_bonus_usd: "1"}',
            "plans[0].tiers[1]: from_std_lots 100 does not ascend (previous tier from 500)",
        ),
        (
            '      - {from_std_lots: "100", per_lot_bonus_usd: "1"}\n'
            '      - {from_std_lots: "100", per_lot_bonus_usd: "2"}',
            "plans[0].tiers[1]: from_std_lots 100 does not ascend (previous tier from 100)",
        ),
        (
            '      - {from_std_lots: "0", per_lot_bonus_usd: "1"}',
            "plans[0].tiers[0]: from_std_lots and per_lot_bonus_usd must be positive",
        ),
        (
            '      - {from_std_lots: "10", per_lot_bonus_usd: "0"}',
            "plans[0].tiers[0]: from_std_lots and per_lot_bonus_usd must be positive",
        ),
    ],
)
def test_a_tier_table_that_is_not_ascending_and_positive_is_refused_at_its_line(
    rows: str, message: str
) -> None:
    seed = _seed(tiers=rows)
    bad_row = 1 if "tiers[1]" in message else 0
    line = [i for i, s in enumerate(seed.splitlines(), 1) if "from_std_lots" in s][bad_row]
    with pytest.raises(SeedError) as err:
        parse_seed(seed, "seed.yaml")
    assert str(err.value) == f"seed.yaml:{line}: {message}"


@pytest.mark.parametrize(
    "keys", [", payout: yearly", ", hold_hours: -1", ', hold_hours: "24"', ', partner_code: ""']
)
def test_bad_payout_keys_are_schema_errors(keys: str) -> None:
    with pytest.raises(SeedError, match=r"ibs\[0\]"):
        parse_seed(_seed(keys))


def test_seed_schema_takes_the_keys_in_changes_too() -> None:
    seed = {
        "effective_from": T0,
        "plans": [
            {"id": "p", "rules": [{"account_types": ["*"], "symbols": ["*"], "per_lot_usd": "1"}]}
        ],
        "ibs": [{"id": "IB-1", "plan": "p", "payout": "monthly", "hold_hours": 0}],
        "changes": [
            {"at": T0, "ib": "IB-1", "payout": "daily", "hold_hours": 24, "partner_code": "7"},
            {"at": T0, "plan": "p", "tiers": [{"from_std_lots": "1", "per_lot_bonus_usd": "1"}]},
        ],
    }
    validate("seed.v1", seed)
    seed["changes"][1]["tiers"] = [{"from_std_lots": "1"}]
    with pytest.raises(SchemaError):
        validate("seed.v1", seed)


def test_the_rule_book_refuses_what_an_admin_change_could_bring() -> None:
    with pytest.raises(ConfigError, match="payout 'yearly'"):
        book(
            change(T0, "plan", "p", rules=[{"per_lot_usd": "1"}]),
            change(T0, "ib", "IB-1", plan="p", payout="yearly"),
        )
    with pytest.raises(ConfigError, match=r"plan p: tiers\[1\]"):
        book(
            change(
                T0,
                "plan",
                "p",
                rules=[{"per_lot_usd": "1"}],
                tiers=[
                    {"from_std_lots": "5", "per_lot_bonus_usd": "1"},
                    {"from_std_lots": "4", "per_lot_bonus_usd": "1"},
                ],
            )
        )


def test_parse_tiers_keeps_the_table() -> None:
    rows = [{"from_std_lots": "0.5", "per_lot_bonus_usd": "0.25"}]
    assert parse_tiers(rows) == (Tier(Decimal("0.5"), Decimal("0.25")),)


# -- which period, under which terms (the period's start) --------------------------------------


def _ib_book(*changes: tuple[str, dict[str, object]]) -> RuleBook:
    plan = change(T0, "plan", "p", rules=[{"per_lot_usd": "1"}])
    ib = change(T0, "ib", "IB-1", plan="p")
    return book(plan, ib, *(change(at, "ib", "IB-1", **f) for at, f in changes))


def test_a_new_payout_kind_starts_with_its_first_whole_period() -> None:
    # Monthly until 15 March 10:00, daily from then on.
    rules = _ib_book(
        (T0, {"payout": "monthly"}), ("2024-03-15T10:00:00Z", {"payout": "daily", "hold_hours": 6})
    )
    ids = {
        at: payout_period(rules, "IB-1", _at(at))
        for at in ("2024-03-02T00:00:00Z", "2024-03-15T12:00:00Z", "2024-03-16T00:00:00Z")
    }
    # 15 March 12:00: that day began (00:00) under the monthly kind, so it is still March's.
    assert [(p.id, t.hold_hours) for p, t in ids.values()] == [
        ("2024-03", 0),
        ("2024-03", 0),
        ("2024-03-16", 6),
    ]


def test_a_longer_payout_kind_waits_for_its_first_period() -> None:
    # Daily until 15 March, monthly from then on: March began daily, so the rest of March
    # stays daily; April is the first month.
    rules = _ib_book((T0, {"payout": "daily"}), ("2024-03-15T00:00:00Z", {"payout": "monthly"}))
    assert payout_period(rules, "IB-1", _at("2024-03-20T09:00:00Z"))[0].id == "2024-03-20"
    assert payout_period(rules, "IB-1", _at("2024-04-20T09:00:00Z"))[0].id == "2024-04"


def test_tiers_in_force_at_the_period_start_apply_to_the_whole_period() -> None:
    one = [{"from_std_lots": "1", "per_lot_bonus_usd": "1"}]
    three = [{"from_std_lots": "1", "per_lot_bonus_usd": "3"}]
    rules = book(
        change(T0, "plan", "p", rules=[{"per_lot_usd": "1"}], tiers=one),
        change(T0, "ib", "IB-1", plan="p", payout="monthly"),
        change("2024-03-16T00:00:00Z", "plan", "p", tiers=three),
    )
    march = payout_period(rules, "IB-1", _at("2024-03-20T00:00:00Z"))[1]
    april = payout_period(rules, "IB-1", _at("2024-04-01T00:00:00Z"))[1]
    assert march.tiers[0].per_lot_bonus_usd == 1
    assert april.tiers[0].per_lot_bonus_usd == 3


# -- the fold: holds and order ------------------------------------------------------------------

MONTHLY = _seed(
    ", payout: monthly, hold_hours: 72",
    '      - {from_std_lots: "100", per_lot_bonus_usd: "1"}',
)
FILLS = [
    fill_of(1, 1, "50", "2024-03-04T10:10:00Z"),
    fill_of(2, 2, "60", "2024-03-20T09:10:00Z"),
    fill_of(3, 9, "5", "2024-03-31T22:10:00Z"),  # IB-2, hourly, no hold
]


def test_a_period_is_due_only_after_its_hold() -> None:
    credits = credits_for(FILLS, MONTHLY)
    rules = parse_seed(MONTHLY).rulebook()

    def due(now: str) -> list[tuple[str, str]]:
        paid = payouts_due(credits, rules, engine_version="t", now=_at(now))
        return [(e["ib"], e.get("period", e["hour"])) for e in paid.settlements] + [
            (c["beneficiary"]["id"], c["basis"]["period"]) for c in paid.tier_bonuses
        ]

    # IB-2's hour 22:00 ends 23:00, hold 0; IB-1's March ends 1 April, hold 72 h: 4 April 00:00.
    assert due("2024-03-31T22:59:59Z") == []
    assert due("2024-03-31T23:00:00Z") == [("IB-2", "2024-03-31T22:00:00Z")]
    assert due("2024-04-03T23:59:59Z") == [("IB-2", "2024-03-31T22:00:00Z")]
    # (50 + 60) std lots >= 100: 110 x 1 USD = 110.00, due with the settlement.
    paid = payouts_due(credits, rules, engine_version="t", now=_at("2024-04-04T00:00:00Z"))
    assert [(e["ib"], e.get("period")) for e in paid.settlements] == [
        ("IB-1", "2024-03"),
        ("IB-2", None),
    ]
    assert [c["amount"] for c in paid.tier_bonuses] == ["110.00"]


def test_the_fold_does_not_depend_on_the_order_of_the_credits() -> None:
    credits = credits_for(FILLS, MONTHLY)
    rules = parse_seed(MONTHLY).rulebook()
    first = payouts_due(credits, rules, engine_version="t")
    shuffled = credits[:]
    random.Random(12).shuffle(shuffled)
    assert payouts_due(shuffled, rules, engine_version="t") == first
    for event in first.settlements:
        validate("settlement.v1", event)


def test_settlement_v1_takes_a_period_only_with_its_kind() -> None:
    rules = parse_seed(MONTHLY).rulebook()
    monthly, hourly = payouts_due(
        credits_for(FILLS, MONTHLY), rules, engine_version="t"
    ).settlements
    assert (monthly["period"], monthly["payout"], monthly["hour"]) == (
        "2024-03",
        "monthly",
        "2024-03-01T00:00:00Z",
    )
    validate("settlement.v1", hourly)
    for missing in ("period", "payout"):
        with pytest.raises(SchemaError):
            validate("settlement.v1", {k: v for k, v in monthly.items() if k != missing})

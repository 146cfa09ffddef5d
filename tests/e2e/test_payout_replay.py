"""Issue 12's done-when, offline: `rebate-engine replay --settlements FILE [--payouts]`.

(a) The real sample histories with tests/payout_seed.yaml (IB-1 paid daily after a 24 h hold,
tiers on its plan): each day's statement of IB-1 totals that day's credits and reconciles with
the day's settlement event. (b) A month's tier bonus, through a seed and the replay, equals a
hand computation.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.cli import main
from engine import __version__
from engine.payouts import parse_period
from engine.settlement import settlement_id
from engine.statement import statement
from schemas import validate
from tests.payout_factories import TIER_SEED, fill_of

REAL_FILLS = sorted(Path("sample/fills").glob("*.fills.jsonl"))
PAYOUT_SEED = Path("tests/payout_seed.yaml")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _replay(tmp: Path, seed: Path, fills: list[Path], *more: str) -> tuple[Path, Path]:
    credits, settlements = tmp / "credits.jsonl", tmp / "settlements.jsonl"
    argv = ["replay", "--seed", str(seed), "--fills", *map(str, fills), "--out", str(credits)]
    assert main([*argv, "--settlements", str(settlements), *more, "--quiet"]) == 0
    return credits, settlements


def _hourly_event(ib: str, hour: str, amount: str, count: int) -> dict[str, Any]:
    """An hourly ib_settlement as the hourly settlement always wrote it, field for field."""
    return {
        "schema": "settlement.v1",
        "event": "ib_settlement",
        "settlement_id": settlement_id(ib, hour, 0),
        "ib": ib,
        "hour": hour,
        "amount": amount,
        "count": count,
        "currency": "USD",
        "engine_version": __version__,
    }


# -- (a) the sample histories, IB-1 paid daily ------------------------------------------------


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _replay(tmp_path_factory.mktemp("daily"), PAYOUT_SEED, REAL_FILLS, "--payouts")


def _day_of(credit: dict[str, Any]) -> str:
    """The UTC day a credit is paid in, read off the credit itself."""
    if credit["kind"] == "tier_bonus":
        return str(credit["basis"]["period"])
    if credit["kind"] == "reversal":
        return str(credit["basis"]["reversed_close_time"][:10])
    return str(credit["fill"]["close_time"][:10])


def test_daily_statements_total_the_days_credits_and_reconcile(
    daily_run: tuple[Path, Path],
) -> None:
    credits_path, settlements_path = daily_run
    credits, events = _jsonl(credits_path), _jsonl(settlements_path)
    for event in events:
        validate("settlement.v1", event)
    mine = [c for c in credits if c["beneficiary"] == {"type": "ib", "id": "IB-1"}]
    per_day: dict[str, Decimal] = defaultdict(Decimal)
    for credit in mine:
        per_day[_day_of(credit)] += Decimal(credit["amount"])
    ib1_events = {e["period"]: e for e in events if e["ib"] == "IB-1"}
    assert {e["payout"] for e in ib1_events.values()} == {"daily"}
    assert len(per_day) > 100  # the sample has IB-1 credits on 138 days
    # Every day with a settled (commission) credit has exactly one event: the hold is over.
    settled_days = {_day_of(c) for c in mine if c["kind"] != "tier_bonus"}
    assert set(ib1_events) == settled_days
    # Other IBs' credits change no IB-1 statement; leaving them out only makes 138 days quicker.
    relevant = [
        c for c in credits if c["beneficiary"]["type"] != "ib" or c["beneficiary"]["id"] == "IB-1"
    ]
    for day, total in per_day.items():
        result = statement(relevant, "IB-1", parse_period(day), events)
        assert result.total == total, day
        assert result.reconciliation is not None and result.reconciliation.equal, day
        event = ib1_events[day]
        assert Decimal(event["amount"]) == result.settled_total == total - result.tier_bonus_total
        assert event["settlement_id"] != ""
    tier_days = {c["basis"]["period"] for c in mine if c["kind"] == "tier_bonus"}
    assert tier_days and tier_days < settled_days


def test_other_ibs_stay_hourly_and_a_month_reconciles_for_every_ib(
    daily_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    credits_path, settlements_path = daily_run
    events = _jsonl(settlements_path)
    others = [e for e in events if e["ib"] != "IB-1"]
    assert others and all("period" not in e and "payout" not in e for e in others)
    # Each is byte for byte the event the hourly settlement publishes for its totals.
    for event in others:
        hourly = _hourly_event(event["ib"], event["hour"], event["amount"], event["count"])
        assert orjson.dumps(event) == orjson.dumps(hourly)
    # A month holds IB-1's days and the others' hours alike; the command checks every IB.
    argv = ["--credits", str(credits_path), "--settlements", str(settlements_path)]
    assert main(["reconcile", "--period", "2023-04", *argv]) == 0
    out = capsys.readouterr().out
    assert "2023-04: 3 IBs reconciled, 0 with differences" in out


def test_statement_command_says_a_day_reconciles(
    daily_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credits_path, settlements_path = daily_run
    day = next(e["period"] for e in _jsonl(settlements_path) if e["ib"] == "IB-1")
    code = main(
        [
            "statement",
            "--ib",
            "IB-1",
            "--period",
            day,
            "--credits",
            str(credits_path),
            "--settlements",
            str(settlements_path),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert "IB-1: reconciled" in capsys.readouterr().out


def test_default_output_is_unchanged_and_payouts_only_appends_tier_bonuses(
    daily_run: tuple[Path, Path], tmp_path: Path
) -> None:
    plain = tmp_path / "plain.jsonl"
    argv = ["replay", "--seed", str(PAYOUT_SEED), "--fills", *map(str, REAL_FILLS)]
    assert main([*argv, "--out", str(plain), "--quiet"]) == 0
    with_payouts = daily_run[0].read_bytes()
    assert with_payouts.startswith(plain.read_bytes())
    appended = with_payouts[len(plain.read_bytes()) :].splitlines()
    assert appended and all(orjson.loads(c)["kind"] == "tier_bonus" for c in appended)
    for line in appended:
        validate("credit.v1", orjson.loads(line))
    # --settlements alone writes the events and leaves the credits as they were.
    alone, _ = _replay(tmp_path, PAYOUT_SEED, REAL_FILLS)
    assert alone.read_bytes() == plain.read_bytes()


def test_settlements_and_payouts_are_offline_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", "--seed", str(PAYOUT_SEED), "--fills", str(REAL_FILLS[0])]
    out = ["--out", str(tmp_path / "c.jsonl"), "--via-kafka", "--payouts"]
    assert main([*argv, *out]) == 2
    assert "offline only" in capsys.readouterr().err


# -- (b) a month's tier bonus by hand ----------------------------------------------------------

# TIER_SEED (tests/payout_factories.py: plan `flat` 10 USD a lot, IB-1 rebates 20%, C-3 100%)
# with IB-1 paid monthly after 72 h, SPEC 3's tier table on the plan, and a new table from
# 16 March: terms are those in force at a period's START, so it first applies to April.
MONTHLY_SEED = (
    TIER_SEED.replace(
        '{id: IB-1, plan: flat, rebate_pct: "20"}',
        '{id: IB-1, plan: flat, rebate_pct: "20", payout: monthly, hold_hours: 72}',
    ).replace(
        'per_lot_usd: "10"}',
        'per_lot_usd: "10"}\n    tiers:\n'
        '      - {from_std_lots: "100", per_lot_bonus_usd: "1"}\n'
        '      - {from_std_lots: "500", per_lot_bonus_usd: "2"}',
    )
    + """changes:
  - {at: "2024-03-16T00:00:00Z", plan: flat, tiers: [{from_std_lots: "100", per_lot_bonus_usd: "3"}]}
"""
)

MONTHLY_FILLS = [
    fill_of(1, 1, "50", "2024-03-04T10:10:00Z"),  # C-1
    fill_of(2, 1, "20.5", "2024-03-15T12:10:00Z"),  # C-1
    fill_of(3, 2, "30", "2024-03-20T09:10:00Z"),  # C-2
    fill_of(4, 3, "20", "2024-03-31T23:10:00Z"),  # C-3: 100% rebate, no ib_commission, counts
    fill_of(7, 2, "40", "2024-03-25T10:10:00Z"),  # C-2, deleted below: does not count
    fill_of(7, 2, "40", "2024-03-25T10:10:00Z", event="delete"),
    fill_of(6, 9, "400", "2024-03-10T10:10:00Z"),  # C-9 is IB-2's (hourly)
    fill_of(5, 1, "10", "2024-04-01T00:10:00Z"),  # April
    fill_of(8, 2, "95", "2024-04-02T08:10:00Z"),  # April
]


def test_a_months_tier_bonus_equals_the_hand_computation(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(MONTHLY_SEED)
    fills = tmp_path / "fills.jsonl"
    fills.write_bytes(b"".join(line + b"\n" for line in MONTHLY_FILLS))
    credits_path, settlements_path = _replay(tmp_path, seed, [fills], "--payouts")
    bonuses = {
        (c["beneficiary"]["id"], c["basis"]["period"]): c
        for c in _jsonl(credits_path)
        if c["kind"] == "tier_bonus"
    }
    # IB-1, March: 50 + 20.5 + 30 + 20 = 120.5 std lots (deal 7 deleted, deal 6 is IB-2's);
    # 120.5 >= 100 and < 500: 1 USD a lot (the table of 1 March) -> 120.50.
    march = bonuses[("IB-1", "2024-03")]
    assert march["amount"] == "120.50"
    assert march["basis"]["std_lots"] == "120.5"
    assert march["basis"]["tier_reached"] == {"from_std_lots": "100", "per_lot_bonus_usd": "1"}
    # IB-1, April: 10 + 95 = 105 std lots >= 100 at the table of 16 March: 3 USD -> 315.00.
    assert bonuses[("IB-1", "2024-04")]["amount"] == "315.00"
    # IB-2 is paid hourly: its hour 2024-03-10T10 holds 400 std lots >= 100: 1 x 400 = 400.00.
    assert bonuses[("IB-2", "2024-03-10T10")]["amount"] == "400.00"
    assert len(bonuses) == 3

    events = _jsonl(settlements_path)
    for event in events:
        validate("settlement.v1", event)
    # IB-1's March event: (50 + 20.5 + 30) lots x 10 USD x 80% kept = 400 + 164 + 240 = 804.00;
    # deal 7's 320.00 and its reversal net out inside the hold, count 3 + 1 - 1 = 3.
    (march_event,) = [e for e in events if e.get("period") == "2024-03"]
    assert (march_event["amount"], march_event["count"]) == ("804.00", 3)
    assert march_event["hour"] == "2024-03-01T00:00:00Z"
    assert march_event["payout"] == "monthly"
    # IB-2's hour is byte for byte what the hourly settlement publishes: 400 x 10 = 4000.00.
    (raw_hourly,) = [
        line for line in settlements_path.read_bytes().splitlines() if b'"IB-2"' in line
    ]
    assert raw_hourly == orjson.dumps(_hourly_event("IB-2", "2024-03-10T10:00:00Z", "4000.00", 1))

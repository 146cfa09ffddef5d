"""`rebate-engine replay --outcomes` and `rebate-engine explain`, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agents.cli import main
from tests.explain_scenario import BAD_LINES, SEED, SERVER, fill_lines


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED)
    fills = tmp_path / "fills.jsonl"
    # Lines 1-5 the scenario's fills, 6 and 7 bad, 8 blank (not a fill: no outcome line).
    fills.write_bytes(b"\n".join([*fill_lines(), *BAD_LINES, b""]) + b"\n")
    return seed, fills


def test_outcomes_list_every_line_and_match_the_credits_written(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    seed, fills = files
    out, outcomes = tmp_path / "credits.jsonl", tmp_path / "outcomes.jsonl"
    code = main(
        [
            "replay",
            "--seed",
            str(seed),
            "--fills",
            str(fills),
            "--out",
            str(out),
            "--outcomes",
            str(outcomes),
            "--quiet",
        ]
    )
    assert code == 0
    rows = [orjson.loads(line) for line in outcomes.read_bytes().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [(r["deal"], r["event"], r["outcome"], r["reasons"]) for r in rows[:5]] == [
        (1, "add", "credited", []),
        (2, "add", "credited", ["min_hold"]),  # credited: its loyalty accrual 0.40
        (3, "add", "credited", ["self_trade_upline"]),
        (4, "add", "credited", []),
        (1, "update", "credited", []),
    ]
    assert [(r["outcome"], r["reason"]) for r in rows[5:]] == [
        ("dead_letter", "undecodable"),
        ("dead_letter", "impossible_value"),
    ]
    assert "point_value" in rows[6]["message"]
    assert all(r["source"] == str(fills) and r["message"] for r in rows[5:])
    written = [orjson.loads(line)["credit_id"] for line in out.read_bytes().splitlines()]
    assert [cid for r in rows[:5] for cid in r["credit_ids"]] == written
    # Deal 1: ib_commission, client_rebate, override, coverage, accrual = 5 credits;
    # its update: 5 reversals + 5 new credits.
    assert (len(rows[0]["credit_ids"]), len(rows[4]["credit_ids"])) == (5, 10)


def test_outcomes_are_refused_through_kafka(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seed, fills = files
    args = ["replay", "--seed", str(seed), "--fills", str(fills), "--out", str(tmp_path / "c")]
    assert main([*args, "--outcomes", str(tmp_path / "o"), "--via-kafka"]) == 2
    assert "offline only" in capsys.readouterr().err


def test_explain_a_deal_in_words_and_as_json(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seed, fills = files
    base = ["explain", "--seed", str(seed), "--fills", str(fills), "--server", SERVER]
    assert main([*base, "--deal", "2"]) == 0
    text = capsys.readouterr().out
    assert "min_hold: held 120 s, plan minimum 180 s: FAILED" in text
    assert main([*base, "--deal", "1", "--json"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert [r["event"] for r in document["revisions"]] == ["add", "update"]
    # What stands after the update: 22.50 + 7.50 + 3.00 + 3.00 USD, 0.50 JM USD.
    assert document["totals"] == {"USD": "36.00", "JMUSD": "0.50"}
    assert main([*base, "--deal", "99"]) == 1  # not in the fills
    assert "not in these fills" in capsys.readouterr().out


def test_explain_a_login(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    seed, fills = files
    assert main(["explain", "--seed", str(seed), "--fills", str(fills), "--login", "1003"]) == 0
    text = capsys.readouterr().out
    # 1 cent lot = 0.01 standard lots of the 2 / 2 = 1 needed.
    assert "Bonus B-CENT (2 USD, granted 2024-02-01T00:00:00Z): 0.01 of 1 standard lots" in text
    assert "deal 4: 1 revision(s)" in text


def test_explain_needs_a_deal_or_a_login(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seed, fills = files
    assert main(["explain", "--seed", str(seed), "--fills", str(fills), "--deal", "1"]) == 2
    assert "either --server S --deal D or --login L" in capsys.readouterr().err


def test_explain_reports_refused_back_office_events(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    seed, fills = files
    events = tmp_path / "crm.jsonl"
    events.write_bytes(b"{not json\n")
    args = ["explain", "--seed", str(seed), "--fills", str(fills), "--crm-events", str(events)]
    assert main([*args, "--server", SERVER, "--deal", "3"]) == 0
    captured = capsys.readouterr()
    assert f"skipped {events}:1:" in captured.err
    assert "withheld (self_trade_upline)" in captured.out


@pytest.mark.parametrize("target", [["--server", SERVER, "--deal", "1"], ["--login", "1001"]])
def test_live_needs_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: list[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["explain", "--live", *target]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err

"""`rebate-engine replay` offline, as a user runs it: files in, credit.v1 lines out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agents.cli import main
from schemas import validate
from tests.crm_factories import (
    BASE_SEED,
    SCENARIO_EVENTS,
    SCENARIO_FILLS,
    SCENARIO_SEED_CHANGES,
    crm_line,
)

REAL_FILLS = sorted(Path("sample/fills").glob("mt4-real-*.fills.jsonl"))


def test_real_histories_replay_to_schema_valid_credits(tmp_path: Path) -> None:
    out = tmp_path / "credits.jsonl"
    events = tmp_path / "events.jsonl"
    code = main(
        [
            "replay",
            "--seed",
            "sample/seed.yaml",
            "--fills",
            *map(str, REAL_FILLS),
            "--out",
            str(out),
            "--events-out",
            str(events),
            "--quiet",
        ]
    )
    assert code == 0
    credits = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(credits) > 1000
    for credit in credits:
        validate("credit.v1", credit)
    assert len({c["credit_id"] for c in credits}) == len(credits)
    assert {c["kind"] for c in credits} >= {
        "ib_commission",
        "client_rebate",
        "ib_override",
        "jm_coverage",
        "loyalty_accrual",
    }


def test_replaying_twice_gives_byte_identical_output(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.jsonl"
        main(
            [
                "replay",
                "--seed",
                "sample/seed.yaml",
                "--fills",
                *map(str, REAL_FILLS),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        outputs.append(out.read_bytes())
    assert outputs[0], "no credits: the comparison below would pass on empty"
    assert outputs[0] == outputs[1]


def test_bad_seed_exits_non_zero_naming_file_line_and_field(tmp_path: Path) -> None:
    seed = tmp_path / "bad.yaml"
    text = Path("sample/seed.yaml").read_text()
    seed.write_text(text.replace("{id: IB-1, plan: std,", "{id: IB-1, plan: gold,"))
    line = next(i for i, s in enumerate(seed.read_text().splitlines(), 1) if "plan: gold" in s)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "replay",
            "--seed",
            str(seed),
            "--fills",
            str(REAL_FILLS[0]),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"bad.yaml:{line}: ibs[2].plan: unknown plan 'gold'" in result.stderr


def test_bad_fills_are_reported_and_skipped_never_fatal(tmp_path: Path) -> None:
    fills = tmp_path / "mixed.jsonl"
    good = REAL_FILLS[0].read_bytes().splitlines()[:3]
    fills.write_bytes(b"\n".join([good[0], b"{oops", good[1], b'{"schema": "fill.v1"}', good[2]]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "replay",
            "--seed",
            "sample/seed.yaml",
            "--fills",
            str(fills),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "mixed.jsonl:2" in result.stderr and "undecodable" in result.stderr
    assert "mixed.jsonl:4" in result.stderr and "schema" in result.stderr
    assert "dead_lettered │     2" in result.stderr


@pytest.mark.parametrize("missing", ["--seed", "--fills", "--out"])
def test_missing_arguments_are_usage_errors(missing: str) -> None:
    argv = ["replay", "--seed", "s.yaml", "--fills", "f.jsonl", "--out", "o.jsonl"]
    i = argv.index(missing)
    with pytest.raises(SystemExit) as exit_:
        main(argv[:i] + argv[i + 2 :])
    assert exit_.value.code == 2


def _replay_cli(
    tmp_path: Path, name: str, seed: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    seed_file = tmp_path / f"{name}.seed.yaml"
    seed_file.write_text(seed)
    fills = tmp_path / "fills.jsonl"
    fills.write_bytes(b"\n".join(SCENARIO_FILLS) + b"\n")
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", "replay", "--seed", str(seed_file),
         "--fills", str(fills), "--out", str(tmp_path / f"{name}.credits.jsonl"), *extra],
        capture_output=True, text=True, timeout=60, check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_crm_events_replay_to_the_credits_of_the_same_history_written_as_a_seed(
    tmp_path: Path,
) -> None:
    events = tmp_path / "crm.jsonl"
    # Written out of `at` order, with one redelivery: the replay applies them by `at`, once.
    lines = [orjson.dumps(e) for e in reversed(SCENARIO_EVENTS)]
    events.write_bytes(b"\n".join([*lines, lines[0]]) + b"\n")
    as_events = _replay_cli(tmp_path, "events", BASE_SEED, "--crm-events", str(events))
    as_seed = _replay_cli(tmp_path, "seed", BASE_SEED + SCENARIO_SEED_CHANGES)
    assert as_events.returncode == 0, as_events.stderr
    assert as_seed.returncode == 0, as_seed.stderr
    credits = (tmp_path / "events.credits.jsonl").read_bytes()
    assert credits == (tmp_path / "seed.credits.jsonl").read_bytes()
    assert len(credits.splitlines()) == 12  # deals 1, 2, 4: 3 credits each; 5: 1; 7: 2
    assert "applied 12 back-office events" in as_events.stderr
    assert "direct clients: unknown_ref_code 1" in as_events.stderr
    assert "1 repeated event_id(s) skipped" in as_events.stderr


def test_bad_crm_events_are_reported_with_their_reason_and_the_replay_goes_on(
    tmp_path: Path,
) -> None:
    events = tmp_path / "crm.jsonl"
    events.write_bytes(
        b"\n".join(
            [
                orjson.dumps(SCENARIO_EVENTS[1]),  # C-88 through 32071
                b"{oops",
                crm_line("client_moved", "2024-03-02T11:00:00Z", client="C-88", ib="IB-404"),
                orjson.dumps(SCENARIO_EVENTS[2]),  # account 900088
            ]
        )
        + b"\n"
    )
    result = _replay_cli(tmp_path, "bad", BASE_SEED, "--crm-events", str(events))
    assert result.returncode == 0, result.stderr
    assert "Skipped back-office events: 2" in result.stderr
    assert "crm.jsonl:2" in result.stderr and "malformed_json" in result.stderr
    assert "crm.jsonl:3" in result.stderr and "unknown_ib" in result.stderr
    # Deal 1 (900088, 2 lots at 15 under IB-1) is still credited: 24.00 + 6.00 + 3.00.
    credits = [orjson.loads(c) for c in (tmp_path / "bad.credits.jsonl").read_bytes().splitlines()]
    assert sorted(c["amount"] for c in credits if c["fill"]["deal"] == 1) == [
        "24.00",
        "3.00",
        "6.00",
    ]


def test_crm_events_file_must_exist(tmp_path: Path) -> None:
    result = _replay_cli(tmp_path, "x", BASE_SEED, "--crm-events", str(tmp_path / "none.jsonl"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_crm_events_through_kafka_are_refused_for_now(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["replay", "--seed", "s.yaml", "--fills", "f.jsonl", "--out", "o.jsonl"]
    assert main([*argv, "--via-kafka", "--crm-events", "e.jsonl"]) == 2
    assert "--crm-events is offline only" in capsys.readouterr().err


def test_the_demos_dead_letters_come_from_the_deliberately_bad_file(tmp_path: Path) -> None:
    # The demo replays every sample file. Only the 9 made-up fills of the bad file are dead
    # letters (sample/README.md: one per kind of SPEC 8; a schema violation and a bad decimal
    # form are both `schema`), and they add no credit to those of the real histories.
    bad = Path("sample/fills/deliberately-bad.fills.jsonl")
    every = sorted(Path("sample/fills").glob("*.fills.jsonl"))
    assert set(every) == {*REAL_FILLS, bad}
    outs = []
    for name, files in (("all", every), ("real", REAL_FILLS)):
        out = tmp_path / f"{name}.jsonl"
        argv = ["replay", "--seed", "sample/seed.yaml", "--out", str(out), "--quiet"]
        assert main([*argv, "--fills", *map(str, files)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    argv = ["replay", "--seed", "sample/seed.yaml", "--fills", str(bad), "--out", "/dev/null"]
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "dead_lettered │     9" in result.stderr
    reasons = (
        "undecodable", "schema", "schema", "negative_volume", "impossible_value",
        "not_a_number", "unknown_platform", "close_before_open", "missing_usd_rate",
    )  # fmt: skip
    for line, reason in enumerate(reasons, start=1):
        where = rf"deliberately-bad\.fills\.jsonl:{line}\s*│\s*{reason}\s"
        assert re.search(where, result.stderr), (line, reason)

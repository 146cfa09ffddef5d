"""`rebate-engine replay` offline, as a user runs it: files in, credit.v1 lines out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agents.cli import main
from schemas import validate

REAL_FILLS = sorted(Path("sample/fills").glob("*.fills.jsonl"))


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

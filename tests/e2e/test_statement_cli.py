"""`rebate-engine statement` and `reconcile` as a partner's back office runs them, and the HTML
page opened from disk in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.cli import main
from engine.payouts import parse_period, tier_bonus_credit
from tests.payout_factories import EVENTS, MARCH, TIERS, credits_for

REAL_FILLS = sorted(Path("sample/fills").glob("*.fills.jsonl"))
ARTIFACTS = Path("out/test-artifacts")  # /out/ is git-ignored
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT_S = 60


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


@pytest.fixture
def march_files(tmp_path: Path) -> tuple[Path, Path]:
    """IB-1's March credits (804.00 commission, see test_statement) plus its 120.50 tier
    bonus (120.5 std lots x 1 USD, see test_payouts), and the hourly settlement events."""
    bonus = tier_bonus_credit(
        "IB-1", parse_period("2024-03"), TIERS, Decimal("120.5"), engine_version="t"
    )
    assert bonus is not None
    credits = _jsonl(tmp_path / "credits.jsonl", [*credits_for(MARCH), bonus])
    return credits, _jsonl(tmp_path / "settlements.jsonl", EVENTS)


def _statement(credits: Path, settlements: Path, out: Path, period: str = "2024-03") -> int:
    return main(
        ["statement", "--ib", "IB-1", "--period", period, "--credits", str(credits),
         "--settlements", str(settlements), "--out", str(out)]
    )  # fmt: skip


def test_statement_writes_csv_and_html(
    march_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credits, settlements = march_files
    assert _statement(credits, settlements, tmp_path / "st") == 0
    said = capsys.readouterr().out
    # 804.00 commission + 120.50 tier bonus = 924.50.
    assert "IB-1 2024-03: 4 credits, total 924.50 USD (settled 804.00, tier bonus 120.50)" in said
    assert "IB-1: reconciled: credits 804.00 USD in 3 = 3 settlement events" in said
    lines = (tmp_path / "st" / "IB-1-2024-03.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("credit_id,day,")
    summary = (tmp_path / "st" / "IB-1-2024-03-summary.csv").read_text()
    assert "client,C-1,2,70.5,564.00" in summary and "total,all,,,924.50" in summary
    assert "reconciliation,equal,3,,0.00" in summary
    html = (tmp_path / "st" / "IB-1-2024-03.html").read_text()
    # Self-contained: nothing the browser would fetch, no script.
    assert not re.search(r"<script|<link|src=|@import|url\(", html)


def test_statement_fails_and_names_the_difference(
    march_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credits, _ = march_files
    # Without the 20 March hour (240.00) the events fall short by 240.00.
    short = _jsonl(tmp_path / "short.jsonl", [e for e in EVENTS if "03-20" not in e["hour"]])
    assert _statement(credits, short, tmp_path / "st") == 1
    assert "IB-1: DIFFERENCE 240.00 USD, 1 credits" in capsys.readouterr().out
    assert main(["statement", "--ib", "IB-1", "--period", "2024-3", "--credits", str(credits),
                 "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "bad period '2024-3'" in capsys.readouterr().err


def _hourly_settlements(credits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the hourly settlement sums, recomputed plainly: IB commission and override credits
    and their reversals, per IB and clock hour of close_time (a reversal: of the reversed
    credit's close_time), a reversal counting -1."""
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for c in credits:
        basis = c["basis"]
        kind = basis.get("reversed_kind", c["kind"])
        if c["beneficiary"]["type"] != "ib" or kind not in {"ib_commission", "ib_override"}:
            continue
        closed = basis.get("reversed_close_time") or c["fill"]["close_time"]
        key = (c["beneficiary"]["id"], closed[:13] + ":00:00Z")
        sums[key][0] += Decimal(c["amount"])
        sums[key][1] += -1 if c["kind"] == "reversal" else 1
    return [
        {"schema": "settlement.v1", "event": "ib_settlement", "ib": ib, "hour": hour,
         "amount": f"{amount:.2f}", "count": count, "currency": "USD"}
        for (ib, hour), (amount, count) in sorted(sums.items())
    ]  # fmt: skip


def test_sample_replay_statements_equal_credits_per_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credits_path = tmp_path / "credits.jsonl"
    assert main(["replay", "--seed", "sample/seed.yaml", "--fills", *map(str, REAL_FILLS),
                 "--out", str(credits_path), "--quiet"]) == 0  # fmt: skip
    credits = [orjson.loads(line) for line in credits_path.read_bytes().splitlines()]
    # The IB paid most often, and the UTC day it was paid most often.
    per_ib: dict[str, int] = defaultdict(int)
    for c in credits:
        if c["beneficiary"]["type"] == "ib":
            per_ib[c["beneficiary"]["id"]] += 1
    ib = max(per_ib, key=lambda k: per_ib[k])
    per_day: dict[str, Decimal] = defaultdict(Decimal)
    for c in credits:
        if c["beneficiary"] == {"type": "ib", "id": ib}:
            placed = c["basis"].get("reversed_close_time") or c["fill"]["close_time"]
            per_day[placed[:10]] += Decimal(c["amount"])
    day = max(per_day, key=lambda d: abs(per_day[d]))
    settlements = _jsonl(tmp_path / "settlements.jsonl", _hourly_settlements(credits))
    capsys.readouterr()
    code = main(["statement", "--ib", ib, "--period", day, "--credits", str(credits_path),
                 "--settlements", str(settlements), "--out", str(tmp_path / "st")])  # fmt: skip
    said = capsys.readouterr().out
    assert code == 0, said
    assert f"total {per_day[day]:.2f} USD" in said
    assert f"{ib}: reconciled:" in said
    # The month holding that day: each day's row of the statement equals the credits of that day.
    month = day[:7]
    assert main(["statement", "--ib", ib, "--period", month, "--credits", str(credits_path),
                 "--settlements", str(settlements), "--out", str(tmp_path / "st")]) == 0  # fmt: skip
    summary = (tmp_path / "st" / f"{ib}-{month}-summary.csv").read_text().splitlines()
    rows = {r.split(",")[1]: Decimal(r.split(",")[4]) for r in summary if r.startswith("day,")}
    assert {d: a for d, a in rows.items() if a} == {
        d: a for d, a in per_day.items() if d.startswith(month) and a
    }
    capsys.readouterr()
    assert main(["reconcile", "--period", month, "--credits", str(credits_path),
                 "--settlements", str(settlements)]) == 0  # fmt: skip
    assert "with differences" in capsys.readouterr().out


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="rebate-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False,
        )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/ensure-tools)")
def test_html_statement_renders_in_chromium(march_files: tuple[Path, Path], tmp_path: Path) -> None:
    credits, settlements = march_files
    assert _statement(credits, settlements, tmp_path) == 0
    page = (tmp_path / "IB-1-2024-03.html").resolve()
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = dict(re.findall(r'<b id="([a-z-]+)">([-0-9.]+)</b>', dom.stdout))
    # 804.00 commission (400 + 164 + 240) + 120.50 tier bonus (120.5 lots x 1 USD) = 924.50.
    assert shown == {"total": "924.50", "settled-total": "804.00", "tier-bonus-total": "120.50"}
    assert 'id="reconciliation" class="ok"' in dom.stdout
    assert dom.stdout.count("<rect ") == 31  # a bar for every day of March
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = (ARTIFACTS / "statement-IB-1-2024-03.png").resolve()
    shot.unlink(missing_ok=True)
    taken = _chromium(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot of the rendered statement: {shot}")

"""Issue 9 through Kafka: a small hand-made stream with each r2 example gives, from a real worker,
the offline replay's credits byte for byte, the amounts worked out by hand below, and a deal
journal in Redis that `explain --live` tells exactly as the offline explanation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.explain import live_deal, live_login
from engine.explain import explain_deal, replay_for_explain
from engine.ledger import Ledger
from engine.seed import Seed, parse_seed
from harness.kafka_replay import publish_and_collect
from harness.workers import settings_env
from tests.factories import make_fill_dict
from tests.integration.fixtures import (
    Deployment,
    deployment_fixture,  # noqa: F401 (registers it)
    offline_replay,
)

# IB-SUB (plan desk: gold 20 USD per standard lot, anything else 5, min hold 60 s) sits under
# IB-MASTER (plan master: 20% override at level 2), whose own client is C-MASTER. IB-NEW (plan
# desk, 10% default rebate, no parent) is where C-MOVER goes on 2024-03-01; under IB-SUB,
# C-MOVER's own rebate is 50%. Login 3001 has 10.00 JM USD allocated.
SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50", exclude_ib_referred: false}
plans:
  - id: desk
    rules:
      - {id: R-GOLD, account_types: ["*"], symbols: [XAUUSD], per_lot_usd: "20"}
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "5"}
    min_hold_seconds: 60
  - id: master
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "2"}]
    upline_override_pct: ["20"]
ibs:
  - {id: IB-MASTER, plan: master, rebate_pct: "0", client: C-MASTER}
  - {id: IB-SUB, plan: desk, parent: IB-MASTER, rebate_pct: "0"}
  - {id: IB-NEW, plan: desk, rebate_pct: "10"}
clients:
  - {id: C-A, ib: IB-SUB, verified: true}
  - {id: C-MOVER, ib: IB-SUB, verified: true, rebate_pct: "50"}
  - {id: C-MASTER, ib: IB-SUB, verified: true}
  - {id: C-CENT, ib: IB-SUB, verified: true}
accounts:
  - {login: 3001, client: C-A, type: standard}
  - {login: 3002, client: C-MOVER, type: standard}
  - {login: 3003, client: C-MASTER, type: standard}
  - {login: 3004, client: C-CENT, type: cent}
wallets:
  - {login: 3001, jm_allocated: "10.00", allocated_at: "2024-01-01T00:00:00Z"}
changes:
  - {at: "2024-03-01T00:00:00Z", client: C-MOVER, ib: IB-NEW}
"""
SERVER = "mt4-live-1"


def _fill(deal: int, login: int, lots: int, **over: Any) -> dict[str, Any]:
    """`lots` whole lots (MT4 volume is in 1/100 lot), EURUSD held 10 min unless `over`."""
    return make_fill_dict(deal=deal, position=deal, login=login, volume=100 * lots, **over)


def _gold(deal: int, login: int, lots: int) -> dict[str, Any]:
    return _fill(
        deal,
        login,
        lots,
        symbol="XAUUSD",
        digits=2,
        open_price="2000.00",
        close_price="2005.00",
        contract_size="100",
    )


def _on(day: str) -> dict[str, str]:
    return {"open_time": f"{day}T10:00:00Z", "close_time": f"{day}T10:10:00Z"}


def _seq(n: int, lots: int) -> dict[str, Any]:
    return _fill(16, 3001, lots, seq=n, event="add" if n == 1 else "update")


FILLS: list[dict[str, Any]] = [
    # Deal 11: held 30 s < 60 s: min_hold, no commission, rebate or override. Its -4.00
    # commission is still a cost: coverage min(4.00 x 50% = 2.00, 10.00) = 2.00 (10 -> 8);
    # accrual (4.00 - 2.00) x 10% = 0.20 JM USD to C-A.
    _fill(
        11,
        3001,
        1,
        commission="-4.00",
        open_time="2024-03-01T10:00:00Z",
        close_time="2024-03-01T10:00:30Z",
    ),
    # Deal 12: one cent lot of gold = 0.01 standard lots: gross 0.01 x 20 = 0.20 to IB-SUB
    # (no rebate); IB-MASTER L2 20% x 0.20 = 0.04.
    _gold(12, 3004, 1),
    # Deal 13, before the move: 1 lot x 5 = 5.00 gross; C-MOVER's own 50% = 2.50 rebate;
    # IB-SUB 2.50; IB-MASTER 20% x 5.00 = 1.00.
    _fill(13, 3002, 1, **_on("2024-02-15")),
    # Deal 14, after the move to IB-NEW: the (C-MOVER, IB-SUB) 50% ended: IB-NEW's default
    # 10% x 5.00 = 0.50 rebate, IB-NEW 4.50; IB-NEW has no upline.
    _fill(14, 3002, 1, **_on("2024-03-15")),
    # Deal 15: C-MASTER (IB-MASTER's own client) trades 2 lots under IB-SUB: 2 x 5 = 10.00 to
    # IB-SUB; IB-MASTER's 20% override withheld (self_trade_upline).
    _fill(15, 3003, 2),
    # Deal 16, with seq: 1 lot (5.00 + override 1.00), corrected to 2 lots (10.00 + 2.00),
    # to 3 lots (15.00 + 3.00), and the correction undone back to 2 lots: seq 4 has seq 2's
    # content, and stands (10.00 + 2.00), each step reversing the one before.
    _seq(1, 1),
    _seq(2, 2),
    _seq(3, 3),
    _seq(4, 2),
    # Deal 17: a +3.00 commission is a refund: 0 paid, so no coverage and no accrual (as a
    # cost, 3.00 would have taken 1.50 JM and accrued 0.15). 1 lot: 5.00 + 1.00 override.
    _fill(17, 3001, 1, commission="3.00"),
]
# Dead letters: a negative point_value, and "-7_000", which is no plain decimal.
BAD = [
    _fill(18, 3001, 1, point_value="-1.5", spread_points=3),
    _fill(19, 3001, 1, commission="-7_000"),
]
BAD_REASONS = {"impossible_value": 1, "schema": 1}

# Net per (deal, beneficiary, currency), reversals included, from the comments above.
EXPECTED = {
    (11, "account", "3001", "USD"): "2.00",
    (11, "client", "C-A", "JMUSD"): "0.20",
    (12, "ib", "IB-SUB", "USD"): "0.20",
    (12, "ib", "IB-MASTER", "USD"): "0.04",
    (13, "client", "C-MOVER", "USD"): "2.50",
    (13, "ib", "IB-SUB", "USD"): "2.50",
    (13, "ib", "IB-MASTER", "USD"): "1.00",
    (14, "client", "C-MOVER", "USD"): "0.50",
    (14, "ib", "IB-NEW", "USD"): "4.50",
    (15, "ib", "IB-SUB", "USD"): "10.00",
    # 5.00 - 5.00 + 10.00 - 10.00 + 15.00 - 15.00 + 10.00; 1 - 1 + 2 - 2 + 3 - 3 + 2.
    (16, "ib", "IB-SUB", "USD"): "10.00",
    (16, "ib", "IB-MASTER", "USD"): "2.00",
    (17, "ib", "IB-SUB", "USD"): "5.00",
    (17, "ib", "IB-MASTER", "USD"): "1.00",
}


def _lines() -> list[bytes]:
    return [orjson.dumps(f) for f in [*FILLS, *BAD]]


def _seed() -> Seed:
    return parse_seed(SEED, "r2-stream-seed.yaml")


def _nets(credits: list[bytes]) -> dict[tuple[int, str, str, str], str]:
    sums: dict[tuple[int, str, str, str], Decimal] = {}
    for raw in credits:
        c = orjson.loads(raw)
        key = (c["fill"]["deal"], c["beneficiary"]["type"], c["beneficiary"]["id"], c["currency"])
        sums[key] = sums.get(key, Decimal(0)) + Decimal(c["amount"])
    return {k: f"{v:.2f}" for k, v in sums.items() if v}


def _explain_cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(deployment.settings)}
    return subprocess.run(
        [str(Path(sys.executable).parent / "rebate-engine"), "explain", "--live", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.timeout(180)
async def test_the_r2_examples_through_kafka(deployment: Deployment) -> None:
    lines = _lines()
    expected, offline = offline_replay(_seed(), lines)
    assert Counter(p.reason for p in offline.problems) == BAD_REASONS

    await deployment.load_seed(_seed())
    deployment.start_worker()
    settings = deployment.settings
    collected = await publish_and_collect(settings, lines, timeout_s=120)

    # The offline replay's credits, byte for byte, each published once.
    assert sorted(collected.credits) == sorted(expected)
    assert collected.redelivered == 0
    assert _nets(collected.credits) == EXPECTED
    assert Counter(h["error"] for _, h in collected.dead_letters) == BAD_REASONS
    assert sorted(v for v, _ in collected.dead_letters) == sorted(lines[len(FILLS) :])

    # Every deal's journal told live equals the offline explanation of the same deal.
    ledger_lines = [("stream", n, line) for n, line in enumerate(lines, 1)]
    for deal in sorted({f["deal"] for f in FILLS}):
        recorded = replay_for_explain(ledger_lines, Ledger.from_seed(_seed()), deal=(SERVER, deal))
        live = await live_deal(settings, SERVER, deal)
        assert live.to_dict() == explain_deal(recorded, SERVER, deal).to_dict()
    undone = await live_deal(settings, SERVER, 16)
    assert [r.settlement.fill.seq for r in undone.revisions] == [1, 2, 3, 4]
    assert undone.totals == {"USD": Decimal("12.00")}  # 10.00 + 2.00 stand
    deals = (await live_login(settings, 3002)).deals
    assert [d.deal for d in deals] == [13, 14]  # by close_time

    # The command a support agent runs states the reason, with its numbers.
    text = await asyncio.to_thread(_explain_cli, deployment, "--server", SERVER, "--deal", "11")
    assert text.returncode == 0, text.stderr
    assert "min_hold: held 30 s, plan minimum 60 s: FAILED" in text.stdout
    assert "Earned less than its plan: min_hold" in text.stdout
    as_json = await asyncio.to_thread(
        _explain_cli, deployment, "--server", SERVER, "--deal", "15", "--json"
    )
    (revision,) = orjson.loads(as_json.stdout)["revisions"]
    assert revision["reasons"] == ["self_trade_upline"]
    assert any("withheld (self_trade_upline)" in s["text"] for s in revision["steps"])

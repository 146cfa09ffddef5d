"""SPEC 6 [r2] through Kafka: the worker's settlement events and tier_bonus credits for a short
stream equal what the offline `replay --settlements --payouts` writes; `statement` and
`reconcile --redis` read them from the topics.

One daily IB with a 24 h hold (IB-D) and one monthly IB with tiers (IB-T,
tests/payout_factories.py). The first worker settles the fills with its settlement timer
stopped (an interval longer than the test), so no period is settled halfway through the
stream; a second worker, whose timer runs every half second with today's clock (long after
every 2024 hold), then settles every period once: sequence 0, as the offline replay does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from agents.cli import main
from engine.seed import parse_seed
from harness.kafka_replay import publish_and_collect
from harness.workers import settings_env
from tests.integration.fixtures import (
    Deployment,
    deployment_fixture,  # noqa: F401 (registers it)
    read_topic,
)
from tests.payout_factories import LIVE_MARCH, LIVE_SEED, fill_of

# IB-D on two days: 2024-03-04 1 + 2 lots, deal 2 deleted inside the hold (8.00, count 1);
# 2024-03-05 3 lots (24.00, count 1). IB-T: March (950.00 over 3; tier bonus 125.00).
STREAM = [
    fill_of(1, 1, "1", "2024-03-04T10:10:00Z"),
    fill_of(2, 1, "2", "2024-03-04T23:50:00Z"),
    fill_of(3, 1, "3", "2024-03-05T08:10:00Z"),
    *LIVE_MARCH,
    fill_of(2, 1, "2", "2024-03-04T23:50:00Z", event="delete"),
]


def _offline(tmp: Path) -> tuple[list[bytes], list[bytes]]:
    """(settlement events, tier_bonus credits) of `rebate-engine replay --settlements --payouts`."""
    seed, fills = tmp / "seed.yaml", tmp / "fills.jsonl"
    seed.write_text(LIVE_SEED)
    fills.write_bytes(b"".join(line + b"\n" for line in STREAM))
    credits, settlements = tmp / "credits.jsonl", tmp / "settlements.jsonl"
    argv = ["replay", "--seed", str(seed), "--fills", str(fills), "--out", str(credits)]
    assert main([*argv, "--settlements", str(settlements), "--payouts", "--quiet"]) == 0
    bonuses = [
        line
        for line in credits.read_bytes().splitlines()
        if orjson.loads(line)["kind"] == "tier_bonus"
    ]
    return settlements.read_bytes().splitlines(), bonuses


@pytest.mark.timeout(180)
async def test_worker_settlements_and_tier_bonuses_equal_the_offline_replay(
    deployment: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected_events, expected_bonuses = _offline(tmp_path)
    # By hand: IB-D 2024-03-04 (8.00, 1) and 2024-03-05 (24.00, 1); IB-T March (950.00, 3) and
    # April (100 lots x 10.00 = 1000.00, 1); IB-T's March bonus 125.00 (April: 100 lots, tier 1,
    # 100.00).
    summary = sorted(
        (e["ib"], e.get("period"), e["amount"], e["count"])
        for e in map(orjson.loads, expected_events)
    )
    assert summary == [
        ("IB-D", "2024-03-04", "8.00", 1),
        ("IB-D", "2024-03-05", "24.00", 1),
        ("IB-T", "2024-03", "950.00", 3),
        ("IB-T", "2024-04", "1000.00", 1),
    ]
    assert sorted(orjson.loads(c)["amount"] for c in expected_bonuses) == ["100.00", "125.00"]

    await deployment.load_seed(parse_seed(LIVE_SEED, "live-seed.yaml"))
    settings = deployment.settings
    fills_only = deployment.start_worker(settlement_interval_s=3600.0)
    await publish_and_collect(settings, STREAM, timeout_s=120)
    fills_only.stop()
    deployment.start_worker(settlement_interval_s=0.5)

    events = await read_topic(settings, settings.topic_settlements, at_least=len(expected_events))
    credits = await read_topic(settings, settings.topic_credits, quiet_s=2.0)
    bonuses = [r.value for r in credits if orjson.loads(r.value)["kind"] == "tier_bonus"]
    assert sorted(r.value for r in events) == sorted(expected_events)
    assert sorted(bonuses) == sorted(expected_bonuses)

    # The partner's commands read the same topics (and the worker's journal in Redis).
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    reconcile = ["reconcile", "--period", "2024-03", "--from-kafka", "--redis"]
    assert await asyncio.to_thread(main, reconcile) == 0
    said = capsys.readouterr().out
    # March: IB-D 8.00 + 24.00 = 32.00 over 2 credits net; IB-T 950.00 over 3 (module doc).
    assert "IB-D: reconciled: credits 32.00 USD in 2 = 2 settlement events" in said
    assert "IB-T: reconciled: credits 950.00 USD in 3 = 1 settlement events" in said
    assert "IB-D: journal in Redis 32.00 USD in 2 = credits" in said
    assert "2024-03: journal in Redis: 2 IBs agree, 0 differ" in said
    out = tmp_path / "statement"
    argv = ["statement", "--ib", "IB-T", "--period", "2024-03", "--from-kafka", "--out", str(out)]
    assert await asyncio.to_thread(main, argv) == 0
    # IB-T's March lines: deals 11, 13, 14, 16, 16's reversal and the tier bonus; 950.00 + 125.00.
    said = capsys.readouterr().out
    assert "IB-T 2024-03: 6 credits, total 1075.00 USD (settled 950.00, tier bonus 125.00)" in said

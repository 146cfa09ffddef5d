"""SPEC 5: for the same seed and fills, the Kafka path gives the same set of credits as the
offline replay, byte for byte per credit; SPEC 8: bad fills are dead-lettered with headers
naming the error and where the fill was."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from engine.seed import load_seed
from harness.kafka_replay import publish_and_collect
from tests.factories import make_fill_dict
from tests.integration.fixtures import (
    ROOT,
    Deployment,
    deployment_fixture,  # noqa: F401 (registers it)
    offline_replay,
    read_topic,
    stream_seed,
)

SAMPLE_FILLS = sorted((ROOT / "sample" / "fills").glob("*.fills.jsonl"))
SAMPLE_SEED = ROOT / "sample" / "seed.yaml"
BAD_SAMPLE = (ROOT / "sample" / "fills" / "deliberately-bad.fills.jsonl").read_bytes().splitlines()
# One of each kind of SPEC 8 (sample/README.md): a schema violation and a bad decimal form
# are both `schema`, every other kind has a reason of its own.
BAD_SAMPLE_REASONS = {
    "undecodable": 1,
    "schema": 2,
    "negative_volume": 1,
    "impossible_value": 1,
    "not_a_number": 1,
    "unknown_platform": 1,
    "close_before_open": 1,
    "missing_usd_rate": 1,
}


def _sample_lines() -> list[bytes]:
    return [
        line for path in SAMPLE_FILLS for line in path.read_bytes().splitlines() if line.strip()
    ]


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.timeout(180)
async def test_sample_fills_through_kafka_give_the_offline_credits(deployment: Deployment) -> None:
    seed = load_seed(SAMPLE_SEED)
    lines = _sample_lines()
    expected, offline = offline_replay(seed, lines)
    # 2,485 real fills (297 + 2,064 + 124), all valid, and the 9 deliberately bad ones.
    assert len(lines) == 2485 + 9 and offline.summary.outcomes["dead_lettered"] == 9

    await deployment.load_seed(seed)
    deployment.start_worker()
    settings = deployment.settings
    collected = await publish_and_collect(settings, lines, timeout_s=120)

    # The same set of credits, byte for byte per credit (no field says when the engine ran).
    assert len(collected.credits) == len(expected) == len(set(expected))
    assert sorted(collected.credits) == sorted(expected)
    assert collected.redelivered == 0  # no crash: every credit published exactly once

    # Every dead letter: the fill as it was, the reason, and its place in the input topic.
    fills = await read_topic(settings, settings.topic_fills, at_least=len(lines))
    origin = {(r.partition, r.offset): r.value for r in fills}
    assert len(origin) == len(lines)
    reasons = Counter(p.reason for p in offline.problems)
    assert reasons == BAD_SAMPLE_REASONS
    dead = collected.dead_letters
    assert Counter(h["error"] for _, h in dead) == reasons
    for value, headers in dead:
        assert headers["original_topic"] == settings.topic_fills
        place = (int(headers["original_partition"]), int(headers["original_offset"]))
        assert origin[place] == value
        assert value in BAD_SAMPLE
        assert headers["error_message"]
    assert sorted(v for v, _ in dead) == sorted(lines[p.line - 1] for p in offline.problems)


@pytest.mark.timeout(90)
async def test_add_resent_with_other_content_in_a_later_batch(deployment: Deployment) -> None:
    # The offline ledger reverses what stands and credits the new content (engine/settle.py).
    seed = stream_seed()
    first = make_fill_dict(login=1008, deal=500, position=500)
    resent = {**first, "volume": 300, "close_price": "1.08100"}
    lines = [orjson.dumps(first), orjson.dumps(resent)]
    expected, _ = offline_replay(seed, lines)
    assert {orjson.loads(c)["kind"] for c in expected} >= {"reversal", "ib_commission"}
    await deployment.load_seed(seed)
    deployment.start_worker()

    before = await publish_and_collect(deployment.settings, lines[:1], timeout_s=60)
    assert sorted(before.credits) == sorted(offline_replay(seed, lines[:1])[0])
    after = await publish_and_collect(deployment.settings, lines[1:], timeout_s=30)

    assert sorted(before.credits + after.credits) == sorted(expected)

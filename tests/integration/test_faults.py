"""SPEC 7 under faults, with realistic simulated fills published at a steady rate:
kill -9 of the worker mid-stream, Redis hung (SIGSTOP) mid-stream, SIGTERM mid-stream, and on
Apache Kafka the broker itself killed -9 or restarted mid-stream on the same log dir.
Whatever happens, the credits are exactly the offline replay's: none lost, none twice."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.seed import Seed, parse_seed
from harness.apache_kafka import ApacheKafka
from harness.embedded import EmbeddedRuntime
from harness.kafka_replay import Collected, publish_and_collect
from harness.simulate.generator import generate_fills, generate_seed
from harness.workers import WorkerProcess
from tests.factories import make_fill_dict
from tests.integration.fixtures import (
    Deployment,
    Scrape,
    background,
    credit_ids,
    deployment_fixture,  # noqa: F401 (registers it)
    jsonl,
    offline_replay,
    read_topic,
    stream_seed,
    totals,
    wait_for,
)

START = datetime(2024, 3, 4, 6, 0, tzinfo=UTC)


def _simulated(accounts: int, fills: int, rng_seed: int) -> tuple[Seed, list[bytes]]:
    rng = random.Random(rng_seed)
    seed_dict = generate_seed(accounts, rng)
    seed = parse_seed(json.dumps(seed_dict), "simulated-seed.json")
    return seed, jsonl(generate_fills(seed_dict, rng, fills, START))


def _revisions_of_non_earning_adds(seed: Seed, lines: list[bytes]) -> int:
    ledger = Ledger.from_seed(seed)
    idle: set[tuple[str, int]] = set()
    count = 0
    for line in lines:
        fill = decode_fill(line)
        outcome = ledger.process(fill).outcome
        if fill.event == "add" and outcome in ("not_earning", "ignored"):
            idle.add((fill.server, fill.deal))
        elif fill.event != "add" and (fill.server, fill.deal) in idle:
            count += 1
    return count


def _processed(worker: WorkerProcess) -> float:
    """Fills this worker process has settled or dead-lettered (0 while it does not answer)."""
    try:
        return Scrape.of(worker.metrics_text()).total("rebate_fills_total")
    except OSError:
        return 0.0


def _at_least(worker: WorkerProcess, fills: int) -> float:
    processed = _processed(worker)
    return processed if processed >= fills else 0.0


def _assert_same_as_offline(collected: Collected, expected: list[bytes]) -> None:
    ids = credit_ids(collected.credits)
    assert len(ids) == len(set(ids)), "a credit id was collected twice"
    missing = set(expected) - set(collected.credits)
    extra = set(collected.credits) - set(expected)
    lost = sorted(
        {(c["fill"]["event"], c["fill"]["deal"], c["kind"]) for c in map(orjson.loads, missing)}
    )
    assert not missing and not extra, f"{len(missing)} credits lost {lost}, {len(extra)} unexpected"
    assert len(collected.credits) == len(expected)
    assert totals(collected.credits) == totals(expected)  # to the cent, per kind and beneficiary
    assert collected.dead_letters == []  # the simulator only writes valid fills


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.timeout(300)
async def test_kill_9_three_times_mid_stream_loses_and_duplicates_nothing(
    deployment: Deployment,
) -> None:
    seed, lines = _simulated(accounts=80, fills=20_000, rng_seed=20240304)
    expected, offline = offline_replay(seed, lines)
    assert len(expected) > 30_000 and offline.summary.outcomes["duplicate"] == 0
    # Issue 9's crash case: revisions of deals whose add earned nothing. Unless every revision
    # is journaled, a redelivered add is settled against its update's standing after a kill.
    assert _revisions_of_non_earning_adds(seed, lines) >= 10
    await deployment.load_seed(seed)
    worker = deployment.start_worker()
    published = [0]
    kills: list[tuple[float, int]] = []  # (fills settled by the killed process, published)

    run = publish_and_collect(
        deployment.settings,
        lines,
        rate=450,  # ~44 s of publishing: every kill lands while fills are still coming in
        progress=lambda n: published.__setitem__(0, n),
        timeout_s=240,
    )
    async with background(run) as collecting:
        for _ in range(3):
            # Let this process settle a good share first, so it dies with work in flight.
            current = worker
            done = await wait_for(lambda w=current: _at_least(w, 1_500), 60, "1,500 fills")
            await asyncio.to_thread(worker.kill)
            kills.append((done, published[0]))
            assert worker.process is not None and worker.process.returncode == -signal.SIGKILL
            worker = await asyncio.to_thread(deployment.start_worker)
        collected = await collecting

    when = "; ".join(f"after {d:.0f} fills of that process, {p} published" for d, p in kills)
    print(
        f"\nkill -9 x3 ({when}): {len(collected.credits)} credits collected, "
        f"{collected.redelivered} re-published copies seen (deduped by credit_id), "
        f"{collected.seconds:.1f} s"
    )
    assert all(p < len(lines) for _, p in kills), f"a kill came after the last publish: {when}"
    _assert_same_as_offline(collected, expected)


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.timeout(180)
async def test_redis_hung_for_10_s_pauses_consumption_and_loses_nothing(
    deployment: Deployment, embedded_runtime: EmbeddedRuntime
) -> None:
    redis = embedded_runtime.redis
    if redis is None:
        pytest.skip("Redis is not embedded in this session")
    # Redis commands time out after redis_socket_timeout_s (2 s by default), then the worker
    # pauses and retries with backoff: a 10 s hang must show up as a pause well within it.
    assert deployment.settings.redis_socket_timeout_s <= 2.0
    seed, lines = _simulated(accounts=40, fills=6_000, rng_seed=7)
    expected, _ = offline_replay(seed, lines)
    await deployment.load_seed(seed)
    worker = deployment.start_worker()

    run = publish_and_collect(deployment.settings, lines, rate=300, timeout_s=150)
    async with background(run) as collecting:
        await wait_for(lambda: _at_least(worker, 1_000), 60, "1,000 fills settled")
        redis.pause()
        stopped_at = time.monotonic()
        try:
            paused = await wait_for(
                lambda: _paused_scrape(worker), 9.0, "rebate_consumer_paused 1", every_s=0.25
            )
            detected_s = time.monotonic() - stopped_at
            state = await asyncio.to_thread(worker.readiness)
            await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - stopped_at)))
            during = Scrape.of(await asyncio.to_thread(worker.metrics_text))
        finally:
            redis.resume()
        await wait_for(lambda: not _paused_scrape(worker), 30, "rebate_consumer_paused 0")
        collected = await collecting

    # While Redis was hung nothing was settled (consumption paused), and /readyz said so.
    assert during.value("rebate_consumer_paused") == 1
    assert during.total("rebate_fills_total") == paused.total("rebate_fills_total")
    assert state is not None and state["ready"] is False and state["paused"] is True
    after = Scrape.of(await asyncio.to_thread(worker.metrics_text))
    assert after.value("rebate_consumer_pauses_total") >= 1
    assert after.value("rebate_redis_up") == 1
    print(
        f"\nRedis SIGSTOP 10 s: pause seen after {detected_s:.1f} s, "
        f"{collected.redelivered} re-published copies, {len(collected.credits)} credits"
    )
    _assert_same_as_offline(collected, expected)


def _paused_scrape(worker: WorkerProcess) -> Scrape | None:
    scrape = Scrape.of(worker.metrics_text())
    return scrape if scrape.value("rebate_consumer_paused") == 1 else None


@pytest.mark.timeout(180)
async def test_sigterm_mid_stream_exits_0_and_commits_what_it_did(deployment: Deployment) -> None:
    seed, lines = _simulated(accounts=40, fills=6_000, rng_seed=11)
    expected, _ = offline_replay(seed, lines)
    await deployment.load_seed(seed)
    worker = deployment.start_worker()

    run = publish_and_collect(deployment.settings, lines, rate=500, timeout_s=150)
    async with background(run) as collecting:
        done = await wait_for(lambda: _at_least(worker, 2_000), 60, "2,000 fills settled")
        started = time.monotonic()
        code = await asyncio.to_thread(worker.stop, signal.SIGTERM, 30)
        took = time.monotonic() - started
        assert code == 0, worker.log_tail()
        assert took < 15, f"SIGTERM took {took:.1f} s"
        deployment.start_worker()
        collected = await collecting

    print(
        f"\nSIGTERM after {done:.0f} fills: exit 0 in {took:.1f} s, "
        f"{collected.redelivered} re-published copies after the restart"
    )
    # Offsets of everything settled before SIGTERM were committed: the next worker started
    # after them and re-published no credit.
    assert collected.redelivered == 0
    _assert_same_as_offline(collected, expected)
    assert {orjson.loads(c)["engine_version"] for c in collected.credits} == {"0.1.0"}


@pytest.mark.timeout(90)
async def test_a_redelivered_delete_republishes_its_stored_reversals(
    deployment: Deployment,
) -> None:
    seed = stream_seed()
    add = make_fill_dict(login=1008, deal=600, position=600)
    delete = {**add, "event": "delete"}
    await deployment.load_seed(seed)
    deployment.start_worker()
    lines = jsonl([add, delete])
    first = await publish_and_collect(deployment.settings, lines, timeout_s=60)
    assert sorted(first.credits) == sorted(offline_replay(seed, lines)[0])
    reversals = [c for c in first.credits if orjson.loads(c)["kind"] == "reversal"]
    assert len(reversals) == 3

    # The same revision once more: what a worker sees after dying between apply and publish.
    # (Count copies in the topic: the collector may also meet the first ones again.)
    await publish_and_collect(deployment.settings, lines[1:], timeout_s=60)
    s = deployment.settings
    copies = Counter(credit_ids(r.value for r in await read_topic(s, s.topic_credits)))

    assert [copies[i] for i in credit_ids(reversals)] == [2, 2, 2]


@pytest.mark.brokers("kafka")
@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
async def test_broker_down_mid_stream_and_back_on_the_same_log_dir(
    deployment: Deployment, kafka_broker: ApacheKafka, how: str
) -> None:
    seed, lines = _simulated(accounts=40, fills=6_000, rng_seed=29)
    expected, _ = offline_replay(seed, lines)
    await deployment.load_seed(seed)
    worker = deployment.start_worker()
    published = [0]
    log_dir = kafka_broker.data_dir

    run = publish_and_collect(
        deployment.settings,
        lines,
        rate=300,  # 20 s of publishing: the broker goes down ~5 s in and is away ~10-15 s
        progress=lambda n: published.__setitem__(0, n),
        timeout_s=200,
    )
    async with background(run) as collecting:
        done = await wait_for(lambda: _at_least(worker, 1_500), 60, "1,500 fills settled")
        at = published[0]
        if how == "kill -9":
            await asyncio.to_thread(kafka_broker.kill)
            await asyncio.sleep(2)  # down while the publisher and the worker keep trying
            await asyncio.to_thread(kafka_broker.start)
        else:
            await asyncio.to_thread(kafka_broker.restart)
        collected = await collecting
    everything = await read_topic(deployment.settings, deployment.settings.topic_credits)

    print(
        f"\nbroker {how} after {done:.0f} fills settled, {at} published; back in "
        f"{kafka_broker.last_start_s:.1f} s; {collected.redelivered} re-published copies, "
        f"{len(collected.credits)} credits in {collected.seconds:.1f} s, {len(everything)} in the topic"
    )
    assert at < len(lines), "the broker went down after the last publish"
    assert kafka_broker.data_dir == log_dir
    assert worker.process is not None and worker.process.poll() is None, "the worker died"
    _assert_same_as_offline(collected, expected)
    # A credit id published again after the outage carries the same bytes every time.
    payloads: dict[str, set[bytes]] = {}
    for record in everything:
        value = record.value or b""
        payloads.setdefault(orjson.loads(value)["credit_id"], set()).add(value)
    assert [cid for cid, p in payloads.items() if len(p) > 1] == []

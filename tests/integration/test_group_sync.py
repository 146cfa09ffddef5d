"""Issue 10: a consumer group that never completes a rebalance, and what shows it.

Seen once on the embedded broker (Tansu 0.6) in about a dozen fault runs, with idle workers: one
killed -9 and another stopped (SIGTERM) a few seconds later, both restarted; they rejoined
every ~8 s ("Joined group (generation N)") and no sync ever completed. The same steps run on
Apache Kafka. While a group has not completed its rebalance, every worker must say so: /readyz
answers 503 with `rebalancing_s` counting up, and `rebate_consumer_rebalance_seconds` (the
RebateRebalanceStuck alert's metric) grows.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from harness.workers import WorkerProcess
from tests.integration.fixtures import (
    Deployment,
    Scrape,
    deployment_fixture,  # noqa: F401 (registers it)
    wait_for,
)

# A healthy group syncs within a session timeout (6 s) plus a join round or two; 60 s is far
# beyond that and well within the minute the stuck group spent rejoining.
_SYNC_WITHIN_S = 60.0
_KILL_TO_SIGTERM_S = 3.0
# Not reproduced on demand: 6 of 6 runs here synced within 6-11 s (kill-to-SIGTERM gaps of
# 1, 3 and 5 s; restarts at once, 3 s and 8 s after the SIGTERM). Kept as a non-strict xfail so
# the run that does hit it is recorded (XFAIL) instead of failing the suite.
_TANSU_XFAIL = (
    "Tansu 0.6 consumer-group bug (docs/upstream/tansu-consumer-group-sync.md): after a "
    "kill -9 and a SIGTERM of two members the rejoined group may never sync; seen once in "
    "about a dozen fault runs, not reproduced on demand"
)


def _assigned(workers: list[WorkerProcess]) -> int:
    states = [w.readiness() or {} for w in workers]
    return sum(int(str(s.get("partitions_assigned", 0))) for s in states)


def _joins(worker: WorkerProcess) -> int:
    text = worker.log_path.read_text(errors="replace")
    return len(re.findall(r"Joined group", text))


@pytest.mark.brokers("tansu", "kafka")
@pytest.mark.timeout(300)
async def test_idle_group_syncs_after_kill_9_and_sigterm_a_few_seconds_apart(
    deployment: Deployment, broker: str, request: pytest.FixtureRequest
) -> None:
    if broker == "tansu":
        request.applymarker(pytest.mark.xfail(reason=_TANSU_XFAIL, strict=False))
    partitions = deployment.settings.topic_partitions
    first = [deployment.start_worker(wait=False) for _ in range(2)]
    await wait_for(lambda: _assigned(first) == partitions, 90, "the first group's sync")

    await asyncio.to_thread(first[0].kill)
    await asyncio.sleep(_KILL_TO_SIGTERM_S)
    assert await asyncio.to_thread(first[1].stop) == 0
    again = [deployment.start_worker(wait=False) for _ in range(2)]

    began = time.monotonic()
    synced_after: float | None = None
    longest_rebalance = 0.0
    while time.monotonic() - began < _SYNC_WITHIN_S:
        states = await asyncio.gather(*(asyncio.to_thread(w.readiness) for w in again))
        answered = [s for s in states if s is not None]
        for state in answered:
            rebalancing = float(str(state["rebalancing_s"]))
            longest_rebalance = max(longest_rebalance, rebalancing)
            # Ready only with the rebalance done; mid-rebalance never ready.
            assert not (state["ready"] and rebalancing > 0), state
        done = len(answered) == 2 and all(float(str(s["rebalancing_s"])) == 0 for s in answered)
        if done and sum(int(str(s["partitions_assigned"])) for s in answered) == partitions:
            synced_after = time.monotonic() - began
            break
        await asyncio.sleep(0.5)

    joins = [_joins(w) for w in again]
    print(
        f"\n{broker}: kill -9 + SIGTERM {_KILL_TO_SIGTERM_S:.0f} s apart, both restarted: "
        + (f"synced after {synced_after:.1f} s" if synced_after else "NO sync")
        + f", 'Joined group' lines per worker {joins}, longest rebalance seen "
        f"{longest_rebalance:.1f} s"
    )
    if synced_after is None:
        # The stuck group must be visible: not ready, and the alert's gauge well above 0.
        for worker in again:
            state = await asyncio.to_thread(worker.readiness)
            assert state is not None and state["ready"] is False, state
            gauge = Scrape.of(await asyncio.to_thread(worker.metrics_text))
            assert gauge.value("rebate_consumer_rebalance_seconds") > _SYNC_WITHIN_S / 2
    assert synced_after is not None, f"no sync within {_SYNC_WITHIN_S:.0f} s; joins {joins}"

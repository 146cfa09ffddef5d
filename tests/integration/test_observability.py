"""What an SRE sees of a live worker: /metrics with sane values after real fills, /healthz, and
/readyz following Redis; every series the dashboard and the alert rules read is exposed."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import Metrics
from engine.seed import load_seed
from harness.embedded import EmbeddedRuntime
from harness.kafka_replay import publish_and_collect
from tests.e2e.promql_names import (
    PROMETHEUS_SERIES,
    exposed_series,
    grafana_query_promql,
    unknown_names,
)
from tests.integration.fixtures import (
    ROOT,
    Deployment,
    module_deployment_fixture,  # noqa: F401 (registers it)
    offline_replay,
    wait_for,
)

SAMPLE_FILLS = sorted((ROOT / "sample" / "fills").glob("*.fills.jsonl"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "rebate-engine.json"
RULE_FILES = sorted((ROOT / "deploy" / "rules").glob("*.yml"))


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
        for rule in group["rules"]
    ]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]
    exprs = [t["expr"] for p in panels for t in p.get("targets", []) if "expr" in t]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        promql = grafana_query_promql(text) if isinstance(text, str) else None
        if var["type"] == "query" and promql:
            exprs.append(promql)
    return exprs


@pytest.mark.timeout(150)
async def test_metrics_of_a_live_worker_after_real_fills(module_deployment: Deployment) -> None:
    deployment = module_deployment
    seed = load_seed(ROOT / "sample" / "seed.yaml")
    lines = [line for p in SAMPLE_FILLS for line in p.read_bytes().splitlines() if line.strip()]
    expected, offline = offline_replay(seed, lines)
    await deployment.load_seed(seed)
    worker = deployment.workers[-1] if deployment.workers else deployment.start_worker()

    collected = await publish_and_collect(deployment.settings, lines, timeout_s=120)
    assert sorted(collected.credits) == sorted(expected)
    decoded = len(lines) - len(offline.problems)
    # The lag gauges are refreshed on scrape; wait for the last fetch to report the end.
    m = await wait_for(
        lambda: (s := deployment.metrics(worker)).total("rebate_consumer_lag_messages") == 0 and s,
        15,
        "consumer lag 0",
    )

    # Fills by outcome: exactly what the offline replay counted.
    assert m.by("rebate_fills_total", "outcome") == {
        outcome: float(offline.summary.outcomes.get(outcome, 0))
        for outcome in ("credited", "not_earning", "ignored", "duplicate", "stale", "dead_lettered")
    }
    # sample/fills/deliberately-bad.fills.jsonl: a schema violation and a bad decimal form.
    assert m.by("rebate_dead_letters_total", "reason")["schema"] == 2
    # Credits by kind, and amounts by kind and currency (absolute values, counters only grow).
    kinds = Counter(orjson.loads(c)["kind"] for c in collected.credits)
    assert {k: v for k, v in m.by("rebate_credits_total", "kind").items() if v} == kinds
    amounts: dict[tuple[str, str], Decimal] = {}
    for c in map(orjson.loads, collected.credits):
        key = (c["kind"], c["currency"])
        amounts[key] = amounts.get(key, Decimal(0)) + abs(Decimal(c["amount"]))
    for (kind, currency), amount in amounts.items():
        exposed = m.value("rebate_credit_amount_total", kind=kind, currency=currency)
        assert exposed == pytest.approx(float(amount), abs=0.01), (kind, currency)
    # Latency: one observation per decoded fill (all carry a broker timestamp), all positive.
    assert m.value("rebate_fill_to_credit_seconds_count") == decoded
    assert m.value("rebate_fill_to_credit_seconds_bucket", le="+Inf") == decoded
    assert 0 < m.value("rebate_fill_to_credit_seconds_sum") < 60 * decoded
    # Batches add up to every consumed fill; Redis was timed, is up; nothing paused.
    assert m.value("rebate_batch_size_sum") == len(lines)
    assert 1 <= m.value("rebate_batch_size_count") <= len(lines)
    assert m.value("rebate_redis_seconds_count", op="apply") >= 1
    assert m.value("rebate_redis_seconds_count", op="rules") >= 1
    assert m.value("rebate_redis_seconds_sum", op="apply") > 0
    assert m.value("rebate_redis_up") == 1
    assert m.value("rebate_partitions_assigned") == 8
    assert m.value("rebate_consumer_rebalance_seconds") == 0  # the group's sync completed
    assert m.value("rebate_consumer_paused") == 0
    assert m.value("rebate_consumer_pauses_total") == 0
    assert m.value("rebate_consumer_lag_seconds") == 0
    assert m.value("rebate_engine_info", version="0.1.0") == 1

    # Every family of agents/metrics.py is on the page, and every series the dashboard and the
    # alert rules read (a misspelt name is an empty panel or an alert that never fires).
    live = exposed_series(text_string_to_metric_families(m.text))
    assert exposed_series(Metrics().registry.collect()).keys() <= live.keys()
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    exprs = [r["expr"] for r in rules] + _dashboard_exprs()
    assert len(exprs) > 20
    assert unknown_names(exprs, live.keys() | recorded, allow=PROMETHEUS_SERIES) == {}


@pytest.mark.timeout(90)
async def test_health_and_readiness_follow_redis(
    module_deployment: Deployment, embedded_runtime: EmbeddedRuntime
) -> None:
    deployment = module_deployment
    worker = deployment.workers[-1] if deployment.workers else deployment.start_worker()
    assert await asyncio.to_thread(_get, f"{worker.url}/healthz") == (
        200,
        {"status": "ok", "version": "0.1.0"},
    )
    status, ready = await asyncio.to_thread(_get, f"{worker.url}/readyz")
    assert status == 200
    assert ready == {
        "partitions_assigned": 8,
        "redis": True,
        "paused": False,
        "rebalancing_s": 0.0,
        "ready": True,
    }

    # Redis hung: not ready (but alive); ready again once Redis answers.
    redis = embedded_runtime.redis
    if redis is None:
        pytest.skip("Redis is not embedded in this session")
    redis.pause()
    try:
        status, state = await asyncio.to_thread(_get, f"{worker.url}/readyz")
        health = await asyncio.to_thread(_get, f"{worker.url}/healthz")
    finally:
        redis.resume()
    assert status == 503 and state["redis"] is False and state["ready"] is False
    assert health[0] == 200
    await wait_for(lambda: _get(f"{worker.url}/readyz")[0] == 200, 10, "/readyz 200 again")

"""A real Prometheus (Debian's `prometheus`) scrapes a running worker with the shipped scrape
config (deploy/prometheus.yml, targets swapped, 1 s interval); the engine's numbers come back
through PromQL: fills and credits counted exactly, the latency histogram usable by
histogram_quantile, the target up under its relabelled instance name."""

from __future__ import annotations

import asyncio
import collections
import json
import math
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agents.settings import Settings
from harness.kafka_replay import publish_and_collect
from tests.integration._helpers import (
    load_seed,
    server,
    simulated,
    wait_ready,
    wait_until,
)
from tests.integration.fixtures import deploy

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
_FILLS = 300

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Debian's prometheus binary is not on PATH (scripts/ensure-tools installs it)",
)


def _scrape_config(target: str, rules_dir: Path) -> dict[str, Any]:
    """deploy/prometheus.yml pointed at one local worker, scraping every second."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(rules_dir / Path(p).name) for p in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    engine_job = jobs["rebate-engine"]
    engine_job["scrape_interval"] = "1s"
    engine_job["scrape_timeout"] = "900ms"
    engine_job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [engine_job]
    return config


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _api(base: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{base}{path}{query}", timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def _query(base: str, promql: str) -> dict[str, float]:
    """Instant query -> {sorted label items as text: value}; vector results only."""
    data = _api(base, "/api/v1/query", query=promql)
    assert data["resultType"] == "vector", data
    return {
        ",".join(f"{k}={v}" for k, v in sorted(r["metric"].items())): float(r["value"][1])
        for r in data["result"]
    }


@pytest.mark.timeout(120)
async def test_prometheus_reads_the_engine_metrics(settings: Settings, tmp_path: Path) -> None:
    seed, lines = simulated(accounts=60, fills=_FILLS, rng_seed=11)
    with deploy(settings, "prometheus-scrape", tmp_path, redis_db=14) as dep:
        await load_seed(dep.settings, seed)
        worker = dep.start_worker(wait=False)
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(
            yaml.safe_dump(_scrape_config(f"127.0.0.1:{worker.web_port}", ROOT / "deploy/rules"))
        )
        argv = [
            str(PROMETHEUS),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--log.level=warn",
        ]
        with server(
            "prometheus",
            lambda port: [*argv, f"--web.listen-address=127.0.0.1:{port}"],
            lambda port: _http_ok(f"http://127.0.0.1:{port}/-/ready"),
            tmp_path / "prometheus.log",
            startup_timeout_s=30,
        ) as prometheus:
            base = f"http://127.0.0.1:{prometheus.port}"
            await asyncio.to_thread(wait_ready, worker)
            # A scrape before the fills, so rate() over the histogram sees them arrive.
            up = await wait_until(
                lambda: _query(base, 'up{job="rebate-engine"} == 1'), "target up", 30
            )
            collected = await publish_and_collect(dep.settings, lines, timeout_s=60)

            fills = await wait_until(
                lambda: _query(base, f"sum(rebate_fills_total) == {_FILLS}"),
                f"sum(rebate_fills_total) == {_FILLS} in Prometheus",
                30,
            )
            credits_by_kind = _query(base, "sum by (kind) (rebate_credits_total) > 0")
            p99 = await wait_until(
                lambda: _query(
                    base,
                    "histogram_quantile(0.99, "
                    "sum by (le) (rate(rebate_fill_to_credit_seconds_bucket[30s]))) > 0",
                ),
                "a fill-to-credit p99 (a number, not NaN)",
                15,
            )
            assigned = _query(base, "sum(rebate_partitions_assigned)")
            rule_groups = _api(base, "/api/v1/rules")["groups"]

    # The relabelling of deploy/prometheus.yml: instance is the host, without the port.
    assert list(up) == ["__name__=up,instance=127.0.0.1,job=rebate-engine"]
    assert list(fills.values()) == [_FILLS]
    published = collections.Counter(orjson.loads(c)["kind"] for c in collected.credits)
    assert published, "the stream earned no credits"
    assert credits_by_kind == {f"kind={k}": float(n) for k, n in published.items()}
    (quantile,) = p99.values()
    assert math.isfinite(quantile)
    assert 0 < quantile <= 10
    assert list(assigned.values()) == [dep.settings.topic_partitions]
    # The shipped alert rules load in the real server.
    assert sum(len(g["rules"]) for g in rule_groups) > 0
    assert {r["health"] for g in rule_groups for r in g["rules"]} <= {"ok", "unknown"}

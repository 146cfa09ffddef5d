"""`rebate-engine bench --quick`, end to end: results.json with the required fields and a PNG.

A benchmark is measured, not asserted: nothing here checks a rate or a latency. What is checked
is that the run completes, reports every number the issue asks for, and that both systems
produced exactly the credits the offline engine computes (a fast wrong answer is no result).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from harness.apache_kafka import missing_tools

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


def test_quick_bench_writes_results_and_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness.bench.command", "--quick", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    results = orjson.loads((tmp_path / "results.json").read_bytes())
    assert isinstance(results["faust_to_raw_ratio"], float)
    assert isinstance(results["p99_ratio_at_1000"], float)
    assert set(results["targets"]) == {
        "faust_max_at_least_half_of_plain",
        "faust_p99_at_1000_within_1_5x_plain",
        "faust_p99_at_1000_below_50ms",
    }
    engine = results["engine_only"]
    assert engine["fills"] > 0 and engine["fills_per_s"] > 0 and engine["credits_per_s"] > 0

    # Both brokers where Java and Maven answer (the command's default), every row names its.
    brokers = ["tansu"] if missing_tools() else ["tansu", "kafka"]
    assert list(results["brokers"]) == brokers and results["broker"] == brokers[0]
    assert {s["broker"] for s in results["summary"]} == set(brokers)
    for broker in brokers:
        assert isinstance(results["brokers"][broker]["faust_p99_at_1000_ms"], float)
        assert isinstance(results["brokers"][broker]["echo_p99_at_1000_ms"], float)
    if "kafka" in brokers:
        assert results["brokers"]["kafka"]["start_s"] > 0  # seconds to the first Metadata
    first = [s for s in results["scenarios"] if s["broker"] == brokers[0]]
    assert len(results["scenarios"]) == len(first) * len(brokers)
    scenarios = {(s["system"], s["load"]): s for s in first}
    assert set(scenarios) == {
        (system, load) for system in ("faust", "plain", "echo") for load in ("1000", "max")
    }
    for s in scenarios.values():
        assert s["complete"], s
        assert s["credits_match"], s  # same credits as the offline engine, nothing lost
        assert s["sustained_per_s"] > 0
        assert s["rss_end_mb"] > 0
    for system in ("faust", "plain", "echo"):
        latency = scenarios[(system, "1000")]["latency_ms"]
        assert set(latency) >= {"p50", "p99", "max"}
        assert scenarios[(system, "1000")]["worker_histogram"]["count"] > 0
    assert results["machine"]["cores"] >= 1

    png = (tmp_path / "latency_throughput.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "faust_to_raw_ratio" in result.stdout

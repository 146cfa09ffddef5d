"""Statistics of a scenario: percentiles, per-second series, histograms."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from harness.bench.config import MAX
from harness.bench.systems import System
from harness.simulate.pacer import PublishStats

__all__ = ["Observed", "Scenario", "histogram", "summarize"]


@dataclass
class Observed:
    """What the bench process saw of one scenario."""

    n: int
    send_at: list[float]  # monotonic send time per fill index (nan when pre-published)
    arrivals: dict[int, float] = field(default_factory=dict)  # index -> first credit arrival
    credit_ids: set[str] = field(default_factory=set)
    foreign: int = 0  # credits whose fill revision is not one we sent (should stay 0)
    publish: PublishStats | None = None
    complete: bool = False


@dataclass
class Scenario:
    system: str
    load: str  # "1000", "5000" or "max"
    offered_per_s: float | None
    fills: int
    expected_credits: int
    credits: int
    credits_match: bool
    complete: bool
    sustained_per_s: float
    seconds: float
    published_per_s: float | None
    latency_ms: dict[str, float] | None  # p50/p90/p99/max/mean, None for the backlog drain
    latency_per_second: list[tuple[float, float, float]] | None  # (t, p50 ms, p99 ms)
    completed_per_second: list[int]  # fills whose first credit arrived in each second
    worker_histogram: dict[str, float] | None
    cpu_s: dict[str, float]
    cpu_ms_per_fill: float
    rss_start_mb: float | None
    rss_end_mb: float | None
    repeat: int = 0
    profile: str | None = None
    broker: str = "tansu"  # where it ran: tansu, kafka (Apache Kafka) or external


def summarize(
    system: System,
    load: int | None,
    observed: Observed,
    expected_credits: int,
    cpu_start: dict[str, float],
    cpu_end: dict[str, float],
    rss_start: int | None,
    rss_end: int | None,
    profile: str | None,
) -> Scenario:
    arrivals = observed.arrivals
    times = sorted(arrivals.values())
    n = observed.n
    latency = per_second = None
    if not times:
        sustained, seconds = 0.0, 0.0
    elif load is None:
        seconds = times[-1] - times[0]
        sustained = n / seconds if seconds > 0 else 0.0
    else:
        first_send = min(observed.send_at)
        seconds = times[-1] - first_send
        sustained = n / seconds if seconds > 0 else 0.0
        samples = sorted(
            ((observed.send_at[i], (t - observed.send_at[i]) * 1000) for i, t in arrivals.items()),
        )
        latency = _percentiles([ms for _, ms in samples])
        per_second = _per_second(samples, first_send)
    cpu = {k: round(cpu_end.get(k, 0.0) - v, 3) for k, v in cpu_start.items()}
    # Everything else the machine did meanwhile (other jobs on a shared box skew a run: look
    # here before trusting a number).
    cpu["other"] = round(cpu.pop("machine", 0.0) - sum(cpu.values()), 3)
    publish = observed.publish
    return Scenario(
        system=system.name,
        load=str(load) if load else MAX,
        offered_per_s=float(load) if load else None,
        fills=n,
        expected_credits=expected_credits,
        credits=len(observed.credit_ids),
        credits_match=len(observed.credit_ids) == expected_credits and observed.foreign == 0,
        complete=observed.complete,
        sustained_per_s=round(sustained, 1),
        seconds=round(seconds, 3),
        published_per_s=round(publish.rate, 1) if publish and load else None,
        latency_ms=latency,
        latency_per_second=per_second,
        completed_per_second=_counts_per_second(times),
        worker_histogram=histogram(system.metrics_text(), "rebate_fill_to_credit_seconds"),
        cpu_s=cpu,
        cpu_ms_per_fill=round(cpu.get("system", 0.0) * 1000 / n, 4) if n else 0.0,
        rss_start_mb=round(rss_start / 1024, 1) if rss_start else None,
        rss_end_mb=round(rss_end / 1024, 1) if rss_end else None,
        profile=profile,
    )


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    return {
        "p50": round(pct(50), 2),
        "p90": round(pct(90), 2),
        "p99": round(pct(99), 2),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
        "count": len(ordered),
    }


def _per_second(
    samples: Sequence[tuple[float, float]], start: float
) -> list[tuple[float, float, float]]:
    """(second since start, p50, p99) of the fills sent in each second."""
    buckets: dict[int, list[float]] = {}
    for sent, ms in samples:
        buckets.setdefault(int(sent - start), []).append(ms)
    out = []
    for second in sorted(buckets):
        p = _percentiles(buckets[second])
        out.append((float(second), p["p50"], p["p99"]))
    return out


def _counts_per_second(times: Sequence[float]) -> list[int]:
    if not times:
        return []
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for t in times:
        counts[int(t - times[0])] += 1
    return counts


def histogram(text: str, name: str) -> dict[str, float] | None:
    """count, sum, and p50/p99 interpolated within buckets (like PromQL histogram_quantile)."""
    if not text:
        return None
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name == f"{name}_count":
                count = sample.value
            elif sample.name == f"{name}_sum":
                total = sample.value
    if not count:
        return None
    buckets.sort()

    def quantile(q: float) -> float:
        rank = q * count
        lower, below = 0.0, 0.0
        for upper, cumulative in buckets:
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower * 1000
                inside = cumulative - below
                share = (rank - below) / inside if inside else 1.0
                return (lower + (upper - lower) * share) * 1000
            lower, below = upper, cumulative
        return lower * 1000

    return {
        "count": count,
        "mean_ms": round(total / count * 1000, 2),
        "p50_ms": round(quantile(0.5), 2),
        "p99_ms": round(quantile(0.99), 2),
    }

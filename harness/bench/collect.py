"""Measuring a scenario: publish at a rate, collect credits, CPU and memory."""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.settings import Settings
from agents.topics import delete_topics, ensure_topics, partitions
from harness.bench.config import CLK_TCK, MAX
from harness.bench.profile import py_spy
from harness.bench.stats import Observed, Scenario, summarize
from harness.bench.systems import Services, System, make_system, reset_redis, scenario_settings
from harness.bench.workload import Workload
from harness.simulate.pacer import PublishStats, publish_paced

__all__ = ["proc_cpu_s", "rss_kb", "run_scenario"]

# -- measuring ---------------------------------------------------------------------------------


async def _collect(
    settings: Settings,
    workload: Workload,
    observed: Observed,
    expected_fills: int,
    expected_credits: int,
    done: asyncio.Event,
    started: asyncio.Event,
) -> None:
    """Read credits.v1 from the start, note when each fill's first credit arrives."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **settings.aiokafka_security_kwargs(),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_credits, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        started.set()
        revisions = workload.revisions
        arrivals = observed.arrivals
        all_fills_at: float | None = None
        while not done.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.monotonic()
            for messages in batches.values():
                for m in messages:
                    credit = orjson.loads(m.value)
                    index = revisions.get(credit["fill"]["revision"])
                    if index is None or index >= observed.n:
                        observed.foreign += 1
                        continue
                    observed.credit_ids.add(credit["credit_id"])
                    if index not in arrivals:
                        arrivals[index] = now
            if len(arrivals) >= expected_fills:
                if len(observed.credit_ids) >= expected_credits:
                    observed.complete = True
                    return
                # Every fill arrived but some credits did not (yet): give them a moment.
                all_fills_at = all_fills_at or now
                if now - all_fills_at > 2.0:
                    return
    finally:
        await consumer.stop()


def proc_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _cpu_snapshot(system: System, services: Services) -> dict[str, float]:
    snap = {"system": proc_cpu_s(system.pid), "bench": _self_cpu_s()}
    for name, pid in services.pids.items():
        snap[name] = proc_cpu_s(pid)
    snap["machine"] = _machine_busy_s()
    return snap


async def run_scenario(
    services: Services,
    workload: Workload,
    system_name: str,
    load: int | None,
    n: int,
    logs: Path,
    *,
    repeat: int = 0,
    profile: tuple[Path, float] | None = None,
    settlement: bool = False,
) -> Scenario:
    run = f"bench-{uuid.uuid4().hex[:6]}-{system_name}-{load or MAX}-{repeat}"
    settings = scenario_settings(services.settings, run, settlement=settlement)
    topics = partitions(settings)
    await ensure_topics(settings, topics)
    await reset_redis(services, settings, workload.seed)
    observed = Observed(n, [math.nan] * n)
    if load is None:  # the backlog the system drains at its maximum rate
        observed.publish = await _publish(settings, workload, n, None, observed)
    expected_fills, expected_credits = workload.expected(n, system_name)
    system = make_system(system_name, settings, logs / f"{run}.log")
    done, started = asyncio.Event(), asyncio.Event()
    collector = asyncio.create_task(
        _collect(settings, workload, observed, expected_fills, expected_credits, done, started)
    )
    profiler: asyncio.Task[str] | None = None
    try:
        await started.wait()
        system.start()
        await asyncio.to_thread(system.wait_ready)
        cpu_start = _cpu_snapshot(system, services)
        rss_start = rss_kb(system.pid)
        if profile is not None:
            profiler = asyncio.create_task(py_spy(system, *profile))
        if load is not None:
            observed.publish = await _publish(settings, workload, n, load, observed)
        timeout = (n / 300 if load is None else n / load + 60) + 30
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(collector), timeout)
        cpu_end = _cpu_snapshot(system, services)
        rss_end = rss_kb(system.pid)
        profile_text = await profiler if profiler is not None else None
    finally:
        done.set()
        with contextlib.suppress(Exception):
            await collector
        await asyncio.to_thread(system.stop)
        with contextlib.suppress(Exception):
            await delete_topics(settings, topics)
    result = summarize(
        system,
        load,
        observed,
        expected_credits,
        cpu_start,
        cpu_end,
        rss_start,
        rss_end,
        profile_text,
    )
    result.repeat = repeat
    return result


async def _publish(
    settings: Settings, workload: Workload, n: int, rate: float | None, observed: Observed
) -> PublishStats:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=0 if rate else 5,
        **settings.aiokafka_security_kwargs(),
    )
    await producer.start()
    send_at = observed.send_at
    monotonic = time.monotonic

    def on_send(i: int) -> None:
        send_at[i] = monotonic()

    try:
        items = zip(workload.keys[:n], workload.lines[:n], strict=True)
        return await publish_paced(
            producer, settings.topic_fills, items, rate=rate, on_send=on_send if rate else None
        )
    finally:
        await producer.stop()

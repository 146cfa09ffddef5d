"""The soak run: one Faust worker through N fills, its memory over time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from agents.settings import Settings
from agents.topics import delete_topics, ensure_topics, partitions
from engine.seed import Seed, load_seed
from harness.bench.collect import proc_cpu_s, rss_kb
from harness.bench.config import FILLS_START, BenchConfig
from harness.bench.results import machine
from harness.bench.stats import histogram
from harness.bench.systems import (
    FaustSystem,
    Services,
    reset_redis,
    running_services,
    scenario_settings,
)
from harness.simulate.pacer import PublishStats, fill_lines, publish_paced, write_seed

__all__ = ["run_soak"]

# -- soak --------------------------------------------------------------------------------------


def run_soak(config: BenchConfig, count: int, rate: float, console: Console) -> dict[str, Any]:
    """One Faust worker through `count` generated fills at `rate`; its RSS over time."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    seed_dict = write_seed(
        config.out_dir / "seed.json", config.accounts, random_seed=config.random_seed
    )
    seed = load_seed(config.out_dir / "seed.json")
    logs = config.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with running_services(Settings(), config.brokers[0]) as services:
        result = asyncio.run(_soak(services, seed, seed_dict, count, rate, logs, console))
    result["machine"] = machine()
    (config.out_dir / "soak.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    )
    table = Table(title=f"soak: Faust worker through {count:,} fills at {rate:,.0f}/s")
    for column in ("fills consumed", "seconds", "worker RSS MB", "broker CPU s", "broker RSS MB"):
        table.add_column(column, justify="right")
    samples = result["samples"]
    step = max(1, len(samples) // 20)
    for sample in [*samples[:-1:step], samples[-1]]:
        table.add_row(
            f"{sample['consumed']:,}",
            f"{sample['t']:.0f}",
            f"{sample['rss_mb']:.1f}",
            f"{sample['broker_cpu_s']:.0f}",
            f"{sample['broker_rss_mb']:.0f}",
        )
    console.print(table)
    console.print(
        f"RSS at start {result['rss_start_mb']} MB, end {result['rss_end_mb']} MB, peak "
        f"{result['rss_peak_mb']} MB; wrote {config.out_dir / 'soak.json'}"
    )
    return result


_SOAK_SAMPLE_S = 5.0
_SOAK_BURST_S = 10.0
_SOAK_STALL_S = 90.0  # no fill committed for this long: the run is stuck, report what we have


async def _publish_in_bursts(
    producer: AIOKafkaProducer, topic: str, items: Iterator[tuple[bytes, bytes]], rate: float
) -> PublishStats:
    """`rate` fills/s on average, as one flat-out burst every _SOAK_BURST_S seconds.

    Bursts make the worker fetch big chunks: the embedded broker's fetch cost grows with the
    log, so a soak paced fill by fill would measure the broker's slowdown, not the worker.
    """
    total = PublishStats()
    burst = max(1, int(rate * _SOAK_BURST_S))
    start = time.monotonic()
    while True:
        chunk = list(itertools.islice(items, burst))
        if not chunk:
            return total
        stats = await publish_paced(producer, topic, chunk, rate=None)
        total.sent += stats.sent
        total.acked += stats.acked
        total.failed += stats.failed
        total.first_error = total.first_error or stats.first_error
        total.seconds = time.monotonic() - start
        if stats.first_error is not None:
            raise stats.first_error
        await asyncio.sleep(max(0.0, start + total.sent / rate - time.monotonic()))


async def _soak(
    services: Services,
    seed: Seed,
    seed_dict: dict[str, Any],
    count: int,
    rate: float,
    logs: Path,
    console: Console,
) -> dict[str, Any]:
    run = f"soak-{uuid.uuid4().hex[:6]}"
    # The soak keeps the settlement timer: its state is part of what must not grow.
    settings = scenario_settings(services.settings, run, settlement=True)
    topics = partitions(settings)
    await ensure_topics(settings, topics)
    await reset_redis(services, settings, seed)
    system = FaustSystem(settings, logs / f"{run}.log")
    security = settings.aiokafka_security_kwargs()
    bootstrap = settings.kafka_bootstrap_servers
    watcher = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        **security,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **security)
    samples: list[dict[str, float]] = []
    tps = [TopicPartition(settings.topic_fills, p) for p in range(settings.topic_partitions)]
    broker_pid = services.pids.get("tansu")
    publisher: asyncio.Task[PublishStats] | None = None
    stalled = False
    started = time.monotonic()

    async def sample() -> int:
        # Offsets start at 0 on a fresh topic: the committed offsets sum to the fills done.
        done = sum([(await watcher.committed(tp)) or 0 for tp in tps])
        samples.append(
            {
                "t": round(time.monotonic() - started, 1),
                "consumed": done,
                "rss_mb": round((rss_kb(system.pid) or 0) / 1024, 1),
                "worker_cpu_s": round(proc_cpu_s(system.pid), 1),
                "broker_cpu_s": round(proc_cpu_s(broker_pid), 1),
                "broker_rss_mb": round((rss_kb(broker_pid) or 0) / 1024, 1),
            }
        )
        return done

    try:
        system.start()
        await asyncio.to_thread(system.wait_ready)
        await watcher.start()
        await producer.start()
        started = time.monotonic()
        items = fill_lines(seed_dict, count, random_seed=7, start=FILLS_START)
        publisher = asyncio.create_task(
            _publish_in_bursts(producer, settings.topic_fills, items, rate)
        )
        last_done, last_progress, next_print = await sample(), time.monotonic(), 0.0
        while True:
            await asyncio.sleep(_SOAK_SAMPLE_S)
            done = await sample()
            now = time.monotonic()
            if done > last_done:
                last_done, last_progress = done, now
            if now >= next_print:
                latest = samples[-1]
                console.print(
                    f"  {done:>10,} fills consumed, worker RSS {latest['rss_mb']} MB"
                    + (f", broker RSS {latest['broker_rss_mb']} MB" if broker_pid else "")
                )
                next_print = now + 30
            if publisher.done() and publisher.exception() is not None:
                raise RuntimeError("publishing failed") from publisher.exception()
            if publisher.done() and done >= count:
                break
            if now - last_progress > _SOAK_STALL_S:
                stalled = True
                console.print(
                    f"[red]no fill committed for {_SOAK_STALL_S:.0f} s at {done:,}: stopping"
                    "[/red] (see broker_cpu_s in the samples)"
                )
                break
    finally:
        if publisher is not None and not publisher.done():
            publisher.cancel()
            with contextlib.suppress(BaseException):
                await publisher
        await producer.stop()
        await watcher.stop()
        await asyncio.to_thread(system.stop)
        with contextlib.suppress(Exception):
            await delete_topics(settings, topics)
    return {
        "fills": count,
        "fills_consumed": samples[-1]["consumed"],
        "stalled": stalled,
        "rate": rate,
        "seconds": round(time.monotonic() - started, 1),
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_end_mb": samples[-1]["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in samples),
        "samples": samples,
        "worker_histogram": histogram(system.metrics_text(), "rebate_fill_to_credit_seconds"),
    }

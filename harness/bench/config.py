"""The bench's presets and constants."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "ECHO_MESSAGES",
    "FILLS_START",
    "FULL",
    "LATENCY_LOAD",
    "MAX",
    "QUICK",
    "SYSTEMS",
    "BenchConfig",
]

SYSTEMS = ("faust", "plain", "echo")
"""echo: the broker floor, the plain loop with the engine replaced by copies of the fill."""
ECHO_MESSAGES = 2  # per fill: about the credits' volume (2.4 credits of ~580 bytes per fill)
FILLS_START = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday: the generated market is open
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX = "max"
LATENCY_LOAD = 1000  # the load of the latency target (SPEC's SLO: p99 < 50 ms at 1,000/s)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What one bench run does; `FULL` and `QUICK` are the presets."""

    out_dir: Path = Path("bench/out")
    accounts: int = 2000
    engine_fills: int = 200_000
    loads: tuple[int, ...] = (1000, 5000)
    load_seconds: float = 8.0
    latency_repeats: int = 5
    max_fills: int = 100_000
    systems: tuple[str, ...] = SYSTEMS
    random_seed: int = 7
    profile: bool = False
    profile_seconds: float = 10.0
    quick: bool = False
    settlement: bool = False
    brokers: tuple[str, ...] = ("tansu",)  # each runs every system (harness/bench/systems.py)


FULL = BenchConfig()
QUICK = BenchConfig(
    accounts=200,
    engine_fills=5000,
    loads=(1000,),
    load_seconds=3.0,
    latency_repeats=1,
    max_fills=6000,
    quick=True,
)

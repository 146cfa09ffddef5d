"""The workload: generated seed and fills, and the engine-only measurement."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from rich.console import Console

from engine import __version__
from engine.errors import BadFill, ConfigError
from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.seed import Seed, load_seed
from harness.bench.config import ECHO_MESSAGES, FILLS_START, BenchConfig
from harness.simulate.pacer import fill_lines, write_seed

__all__ = ["EngineOnly", "Workload", "engine_only", "make_workload"]

# -- workload ----------------------------------------------------------------------------------


@dataclass
class Workload:
    """The generated seed and fills both systems get, with what the offline engine makes of
    them: credits per fill (to know when a scenario is done and that nothing went missing)."""

    seed: Seed
    seed_path: Path
    keys: list[bytes]
    lines: list[bytes]
    revisions: dict[str, int]  # fill revision -> index of its first occurrence
    credits_per_fill: list[int]
    first_of_revision: list[bool]

    def expected(self, n: int, system: str) -> tuple[int, int]:
        """(fills whose output the collector waits for, messages) among the first n fills."""
        if system == "echo":  # ECHO_MESSAGES per distinct fill revision
            distinct = sum(self.first_of_revision[:n])
            return distinct, ECHO_MESSAGES * distinct
        with_credits = sum(1 for c in self.credits_per_fill[:n] if c)
        return with_credits, sum(self.credits_per_fill[:n])


@dataclass
class EngineOnly:
    fills: int
    credits: int
    seconds: float
    fills_per_s: float
    credits_per_s: float
    outcomes: dict[str, int]


def make_workload(config: BenchConfig, count: int, console: Console) -> Workload:
    seed_path = config.out_dir / "seed.json"
    with console.status(f"generating a seed ({config.accounts} accounts) and {count:,} fills"):
        seed_dict = write_seed(seed_path, config.accounts, random_seed=config.random_seed)
        pairs = list(
            fill_lines(seed_dict, count, random_seed=config.random_seed, start=FILLS_START)
        )
        seed = load_seed(seed_path)
    n = len(pairs)
    return Workload(
        seed, seed_path, [k for k, _ in pairs], [v for _, v in pairs], {}, [0] * n, [False] * n
    )


def engine_only(workload: Workload) -> EngineOnly:
    """decode + settle + apply + credit serialization, in this process, on one core.

    The pass also records credits per fill and the revision index the scenarios use; that
    bookkeeping is two list/dict stores per fill, next to ~100 us of engine work.
    """
    ledger = Ledger.from_seed(workload.seed)
    credits_per_fill = workload.credits_per_fill
    revisions = workload.revisions
    outcomes: dict[str, int] = {}
    credits = 0
    dumps = orjson.dumps
    started = time.perf_counter()
    for i, line in enumerate(workload.lines):
        try:
            fill = decode_fill(line)
            settlement = ledger.process(fill)
        except (BadFill, ConfigError) as exc:
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
            continue
        workload.first_of_revision[i] = revisions.setdefault(fill.revision, i) == i
        outcomes[settlement.outcome] = outcomes.get(settlement.outcome, 0) + 1
        if settlement.outcome == "duplicate":
            continue
        for credit in settlement.credits:
            dumps(credit.to_dict(__version__))
        credits_per_fill[i] = len(settlement.credits)
        credits += len(settlement.credits)
    seconds = time.perf_counter() - started
    n = len(workload.lines)
    return EngineOnly(n, credits, seconds, n / seconds, credits / seconds, outcomes)

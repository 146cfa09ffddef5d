"""Where the microseconds of a fill go (docs/perf/where-the-microseconds-go.md measures with it).

Runs, on the bench's generated workload (same seed and fills as `make bench`), either
  rate    the bench's engine-only row itself (harness.bench.workload.engine_only), fills/s;
  stages  the worker's CPU path without I/O (what FillProcessor does per fill around the Lua
          call: decode, settle, credit JSON, payout increments, standing / output / journal
          encoding, ApplyItem.to_arg), timed per stage with perf_counter_ns;
  profile the same loop under cProfile, printed as the functions the document groups.
`py-spy record --native -f raw -- python scripts/profile_hot_path.py stages` attributes the
native time (Decimal's libmpdec, orjson) that cProfile cannot see.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from agents.storage.codec import (
    credit_json,
    encode_journal_entry,
    encode_output,
    encode_standing,
)
from agents.storage.store import ApplyItem
from agents.tuning import tune_gc
from engine.errors import BadFill, ConfigError
from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.settle import UNCHANGED_OUTCOMES
from engine.settlement import SlotMemo, payout_increments, reversed_credits
from engine.state import DealJournal
from harness.bench.config import BenchConfig
from harness.bench.workload import Workload, engine_only, make_workload

STAGES = ("decode", "settle", "credit_json", "payouts", "standing", "output", "journal", "to_arg")
BATCH = 500  # the worker's slot memo lives one round (a batch); the bench's max_records order


def workload(fills: int) -> Workload:
    out = Path(tempfile.mkdtemp(prefix="profile-hot-path-"))
    return make_workload(BenchConfig(out_dir=out), fills, Console(stderr=True, quiet=True))


def worker_path(w: Workload, clock: Callable[[], int]) -> tuple[dict[str, int], int, int]:
    """The per-fill CPU work of FillProcessor._settle_all, state kept in an offline Ledger.

    Returns (ns per stage, fills, credits)."""
    ledger = Ledger.from_seed(w.seed)
    spent = dict.fromkeys(STAGES, 0)
    credits = 0
    memo: SlotMemo = {}
    for i, line in enumerate(w.lines):
        if i % BATCH == 0:
            memo = {}
        t0 = clock()
        try:
            fill = decode_fill(line)
        except BadFill:
            continue
        t1 = clock()
        deal_key = (fill.server, fill.deal)
        journal = ledger.journals.get(deal_key) or DealJournal()
        standing = journal.standing
        try:
            s = ledger.process(fill)
        except ConfigError:
            continue
        t2 = clock()
        if s.outcome in UNCHANGED_OUTCOMES:
            spent["decode"] += t1 - t0
            spent["settle"] += t2 - t1
            continue
        encoded = {c.credit_id: credit_json(c) for c in s.credits}
        t3 = clock()
        payouts = payout_increments(
            s.credits, reversed_credits(s.credits, standing), ledger.book, memo
        )
        t4 = clock()
        standing_json = encode_standing(s.standing, encoded) if s.standing else ""
        t5 = clock()
        output_json = encode_output(s.output, encoded)
        t6 = clock()
        entry = encode_journal_entry(
            line,
            fill.revision,
            s.outcome,
            s.reasons,
            s.standing.effects.bonus_lots if s.standing else (),
        )
        t7 = clock()
        ApplyItem(
            login=fill.login,
            expected_version=1,
            account=s.account,
            server=fill.server,
            deal=fill.deal,
            revision=fill.revision,
            expected_standing=standing.revision if standing else "",
            standing=s.standing,
            seq=fill.seq,
            standing_json=standing_json,
            output_json=output_json,
            rewards=s.reward_deltas,
            settlements=payouts.settlements,
            lots=payouts.lots,
            journal_entry=entry,
            close_epoch=int(fill.close_time.timestamp()),
        ).to_arg()
        t8 = clock()
        for stage, ns in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5,
                                      t7 - t6, t8 - t7), strict=True):  # fmt: skip
            spent[stage] += ns
        credits += len(s.credits)
    return spent, len(w.lines), credits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("rate", "stages", "profile"))
    parser.add_argument("--fills", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=60)
    args = parser.parse_args()
    w = workload(args.fills)
    tune_gc()  # as the CLI and the bench do before measuring
    if args.mode == "rate":
        e = engine_only(w)
        print(f"engine_only fills={e.fills} credits={e.credits} s={e.seconds:.3f} "
              f"fills/s={e.fills_per_s:,.0f} credits/s={e.credits_per_s:,.0f}")  # fmt: skip
    elif args.mode == "stages":
        started = time.perf_counter()
        spent, fills, credits = worker_path(w, time.perf_counter_ns)
        wall = time.perf_counter() - started
        print(f"fills={fills} credits={credits} wall_us_per_fill={wall * 1e6 / fills:.2f}")
        for stage in STAGES:
            print(f"{stage:12s} {spent[stage] / 1000 / fills:8.2f} us/fill")
        print(f"{'sum':12s} {sum(spent.values()) / 1000 / fills:8.2f} us/fill")
    else:
        profiler = cProfile.Profile()
        profiler.enable()
        worker_path(w, time.perf_counter_ns)
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()

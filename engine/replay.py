"""Offline replay: a recorded fill stream through the engine and the in-memory ledger.

No broker, no Redis. Bad fills are reported and skipped, never fatal; the credits written are
byte-identical for the same seed and fills (no wall-clock field anywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine import __version__
from engine.errors import BadFill, ConfigError
from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.settle import UNCHANGED_OUTCOMES
from engine.summary import Summary

__all__ = ["Problem", "replay_lines"]


@dataclass(frozen=True, slots=True)
class Problem:
    """A fill that was skipped: where it was and why."""

    source: str
    line: int
    reason: str
    message: str


@dataclass
class ReplayResult:
    summary: Summary = field(default_factory=Summary)
    problems: list[Problem] = field(default_factory=list)


def replay_lines(
    lines: Iterable[tuple[str, int, bytes]],
    ledger: Ledger,
    write: Callable[[bytes], object],
    *,
    write_event: Callable[[bytes], object] | None = None,
    on_credit: Callable[[Mapping[str, Any]], object] | None = None,
    engine_version: str = __version__,
) -> ReplayResult:
    """Replay (source, line number, raw JSON) triples; `write` gets one credit.v1 line each.

    `on_credit` also gets each credit.v1 dict written (for the payout fold after the replay).
    """
    result = ReplayResult()
    summary = result.summary
    for source, number, raw in lines:
        if not raw.strip():
            continue
        try:
            fill = decode_fill(raw)
            settlement = ledger.process(fill)
        except (BadFill, ConfigError) as exc:
            summary.add_dead_letter(exc.reason)
            result.problems.append(Problem(source, number, exc.reason, str(exc)))
            continue
        summary.add_outcome(settlement.outcome, settlement.reasons)
        if settlement.outcome in UNCHANGED_OUTCOMES:
            continue  # a duplicate was written when it was first processed; stale emits nothing
        for credit in settlement.credits:
            data = credit.to_dict(engine_version)
            write(orjson.dumps(data) + b"\n")
            summary.add_credit(data)
            if on_credit is not None:
                on_credit(data)
        if write_event is not None:
            for event in settlement.output.events:
                write_event(orjson.dumps(event.to_dict()) + b"\n")
    return result

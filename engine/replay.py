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
from engine.settle import UNCHANGED_OUTCOMES, Settlement
from engine.summary import Summary

__all__ = ["Problem", "outcome_record", "replay_lines"]


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
    on_line: Callable[[str, int, Settlement | Problem], object] | None = None,
    engine_version: str = __version__,
) -> ReplayResult:
    """Replay (source, line number, raw JSON) triples; `write` gets one credit.v1 line each.

    `on_credit` also gets each credit.v1 dict written (for the payout fold after the replay);
    `on_line` gets, for every non-blank line in order, its Settlement or its Problem.
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
            problem = Problem(source, number, exc.reason, str(exc))
            result.problems.append(problem)
            if on_line is not None:
                on_line(source, number, problem)
            continue
        summary.add_outcome(settlement.outcome, settlement.reasons)
        if on_line is not None:
            on_line(source, number, settlement)
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


def outcome_record(source: str, line: int, item: Settlement | Problem) -> dict[str, Any]:
    """One `replay --outcomes` line for testers: what became of one input line.

    A fill: its identity, outcome, reasons and the ids of the credits this line wrote to
    `--out`, in order (none for a duplicate or a stale revision: they write nothing). A bad
    line: outcome "dead_letter" with the dead-letter reason and message.
    """
    if isinstance(item, Problem):
        return {
            "source": source,
            "line": line,
            "outcome": "dead_letter",
            "reason": item.reason,
            "message": item.message,
        }
    fill = item.fill
    written = item.outcome not in UNCHANGED_OUTCOMES
    return {
        "source": source,
        "line": line,
        "server": fill.server,
        "deal": fill.deal,
        "event": fill.event,
        "revision": fill.revision,
        "seq": fill.seq,
        "outcome": item.outcome,
        "reasons": list(item.reasons),
        "credit_ids": [c.credit_id for c in item.credits] if written else [],
    }

"""Human-facing output: the replay/demo summary tables and problem lists (rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from engine.replay import Problem
from engine.summary import Summary

__all__ = ["print_problems", "print_summary"]


def print_summary(summary: Summary, console: Console, title: str = "Replay summary") -> None:
    outcomes = Table(title=f"{title}: {summary.fills} fills", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("fills", justify="right")
    outcomes.add_column("reasons it earned less than its plan")
    for outcome, count in sorted(summary.outcomes.items()):
        outcomes.add_row(outcome, str(count), _reasons(summary, outcome))
    console.print(outcomes)

    kinds = Table(title=f"Credits by kind: {summary.credits}", title_justify="left")
    for name, justify in (("kind", "left"), ("currency", "left"), ("credits", "right"),
                          ("amount", "right")):  # fmt: skip
        kinds.add_column(name, justify=justify)  # type: ignore[arg-type]
    for (kind, currency), (count, total) in sorted(summary.by_kind.items()):
        kinds.add_row(kind, currency, str(count), f"{total:,.2f}")
    for currency, total in sorted(summary.totals().items()):
        kinds.add_row("[b]net total[/b]", currency, "", f"[b]{total:,.2f}[/b]")
    console.print(kinds)

    for label, table in (("IB", summary.by_ib), ("client", summary.by_client)):
        if not table:
            continue
        t = Table(title=f"USD credited per {label} (net of reversals)", title_justify="left")
        t.add_column(label)
        t.add_column("USD", justify="right")
        for ident, total in sorted(table.items()):
            t.add_row(ident, f"{total:,.2f}")
        console.print(t)


def _reasons(summary: Summary, outcome: str) -> str:
    items = sorted((r, n) for (o, r), n in summary.reasons.items() if o == outcome)
    return ", ".join(f"{reason} {count}" for reason, count in items)


def print_problems(
    problems: Sequence[Problem], console: Console, limit: int = 10, what: str = "fills"
) -> None:
    if not problems:
        return
    t = Table(title=f"Skipped {what}: {len(problems)} (reported, not fatal)", title_justify="left")
    for column in ("where", "reason", "detail"):
        t.add_column(column)
    for p in problems[:limit]:
        t.add_row(f"{p.source}:{p.line}", p.reason, p.message)
    if len(problems) > limit:
        t.add_row("...", f"{len(problems) - limit} more", "")
    console.print(t)

"""Partner statements on disk: CSV and one self-contained HTML page (SPEC 6 [r2]).

The page has inline CSS and an inline SVG chart, no script and nothing fetched, so a partner
opens it offline in any browser. The numbers come from engine/statement.py; this module only
lays them out. The commands read credits (and settlement events) from JSON-lines files or, with
`--from-kafka`, from the credits and settlements topics (from offset 0 until quiet; a record
published twice after a worker crash counts once, by its id). `reconcile --redis` also compares
each IB's credits with the sums the worker journaled in Redis, from which it settles.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import orjson

from agents.settings import Settings
from agents.storage.store import RedisStore, connect
from agents.topics import read_topic
from engine.money import ZERO, fmt
from engine.payouts import Period, parse_period
from engine.settlement import parse_slot
from engine.statement import (
    Group,
    Reconciliation,
    Statement,
    StatementLine,
    reconcile,
    statement,
)

__all__ = [
    "journal_reconciliation",
    "register",
    "render_csv",
    "render_html",
    "write_statement",
]

_PERIOD_HELP = "payout period: 2024-03-04T10 (hour), 2024-03-04, 2024-W10 (ISO week) or 2024-03"
_LINE_FIELDS = (
    "credit_id", "day", "at", "kind", "client", "login", "symbol", "deal", "rule", "level",
    "std_lots", "amount", "formula",
)  # fmt: skip
_SECTIONS = (("client", "Per client"), ("symbol", "Per symbol"), ("rule", "Per rule"),
             ("level", "Per level"))  # fmt: skip


def register(sub: Any) -> None:
    """Add `statement` and `reconcile` to the CLI's subcommands."""
    cmd = sub.add_parser("statement", help="what a partner IB is paid for a payout period")
    cmd.add_argument("--ib", required=True)
    cmd.add_argument("--period", required=True, help=_PERIOD_HELP)
    _sources(cmd, settlements_required=False)
    cmd.add_argument("--out", required=True, type=Path, help="directory for the CSV and HTML")
    cmd.set_defaults(handler=_statement_command)
    rec = sub.add_parser("reconcile", help="credits against settlement events, per IB, to the cent")
    rec.add_argument("--period", required=True, help=_PERIOD_HELP)
    _sources(rec, settlements_required=True)
    rec.add_argument(
        "--redis",
        action="store_true",
        help="also compare with the settlement sums the worker journaled in Redis (REDIS_URL)",
    )
    rec.set_defaults(handler=_reconcile_command)


def _sources(cmd: Any, *, settlements_required: bool) -> None:
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--credits", type=Path, help="credit.v1 JSON lines")
    source.add_argument(
        "--from-kafka",
        action="store_true",
        help="read the credits and settlements topics from offset 0 until quiet "
        "(KAFKA_BOOTSTRAP_SERVERS and the topic settings)",
    )
    need = "required with --credits" if settlements_required else "to reconcile with"
    cmd.add_argument("--settlements", type=Path, help=f"settlement.v1 JSON lines ({need})")
    cmd.add_argument(
        "--quiet-s", type=float, default=2.0, help="--from-kafka: stop after this long quiet"
    )


def _read(
    args: argparse.Namespace, *, settlements_required: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None] | None:
    """(credits, settlement events or None) from the files or the topics; None: bad usage."""
    if not args.from_kafka:
        if settlements_required and args.settlements is None:
            print("error: --settlements is required with --credits", file=sys.stderr)
            return None
        events = _read_jsonl(args.settlements) if args.settlements else None
        return _read_jsonl(args.credits), events
    if args.settlements is not None:
        print("error: --from-kafka reads the settlements topic too", file=sys.stderr)
        return None
    settings = Settings()
    if settings.kafka_bootstrap_servers is None:
        print("error: KAFKA_BOOTSTRAP_SERVERS is not set", file=sys.stderr)
        return None
    credits = _from_topic(settings, settings.topic_credits, "credit_id", args.quiet_s)
    events = _from_topic(settings, settings.topic_settlements, "settlement_id", args.quiet_s)
    return credits, events


def _from_topic(
    settings: Settings, topic: str, id_field: str, quiet_s: float
) -> list[dict[str, Any]]:
    """Every record of a topic, once per id (at-least-once publishing may repeat one)."""
    records = asyncio.run(read_topic(settings, topic, quiet_s=quiet_s, timeout_s=3600))
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.value:
            value = orjson.loads(record.value)
            seen.setdefault(value[id_field], value)
    return list(seen.values())


def _statement_command(args: argparse.Namespace) -> int:
    period = _period_or_none(args.period)
    read = _read(args, settlements_required=False)
    if period is None or read is None:
        return 2
    credits, events = read
    result = statement(credits, args.ib, period, events)
    paths = write_statement(result, args.out)
    print(
        f"{result.ib} {period.id}: {len(result.lines)} credits, total {result.total:.2f} USD "
        f"(settled {result.settled_total:.2f}, tier bonus {result.tier_bonus_total:.2f})"
    )
    if result.reconciliation is not None:
        print(result.reconciliation.describe())
    for path in paths:
        print(f"wrote {path}")
    return 0 if result.reconciliation is None or result.reconciliation.equal else 1


def _reconcile_command(args: argparse.Namespace) -> int:
    period = _period_or_none(args.period)
    read = _read(args, settlements_required=True)
    if period is None or read is None:
        return 2
    credits, events = read
    results = reconcile(credits, events or (), period)
    for r in results:
        print(r.describe())
    bad = [r for r in results if not r.equal]
    print(f"{period.id}: {len(results) - len(bad)} IBs reconciled, {len(bad)} with differences")
    if args.redis:
        settings = Settings()
        if settings.redis_url is None:
            print("error: REDIS_URL is not set", file=sys.stderr)
            return 2
        journal = asyncio.run(_journal(settings))
        lines, differ = journal_reconciliation(journal, results, period)
        print("\n".join(lines))
        if differ:
            return 1
    return 1 if bad else 0


async def _journal(settings: Settings) -> dict[str, dict[str, tuple[int, int]]]:
    redis = connect(settings)
    try:
        return await RedisStore(redis).settlement_journal()
    finally:
        await redis.aclose()


def journal_reconciliation(
    journal: dict[str, dict[str, tuple[int, int]]],
    results: Sequence[Reconciliation],
    period: Period,
) -> tuple[list[str], int]:
    """Each IB's settled credits against the worker's journal sums of the payout slots that
    start in `period` (as settlement events are placed); (lines to print, IBs that differ)."""
    sums: dict[str, tuple[Decimal, int]] = {}
    for slot, per_ib in journal.items():
        if period.contains(parse_slot(slot)[0].start):
            for ib, (amount_cents, count) in per_ib.items():
                amount, n = sums.get(ib, (ZERO, 0))
                sums[ib] = (amount + Decimal(amount_cents).scaleb(-2), n + count)
    credits = {r.ib: (r.credits_amount, r.credits_count) for r in results}
    lines, differ = [], 0
    for ib in sorted(sums.keys() | credits.keys()):
        j_amount, j_count = sums.get(ib, (ZERO, 0))
        c_amount, c_count = credits.get(ib, (ZERO, 0))
        if (j_amount, j_count) == (c_amount, c_count):
            lines.append(f"{ib}: journal in Redis {j_amount:.2f} USD in {j_count} = credits")
        else:
            differ += 1
            lines.append(
                f"{ib}: JOURNAL DIFFERENCE {c_amount - j_amount:.2f} USD, {c_count - j_count} "
                f"credits: credits {c_amount:.2f} USD in {c_count}, journal in Redis "
                f"{j_amount:.2f} USD in {j_count}"
            )
    lines.append(f"{period.id}: journal in Redis: {len(lines) - differ} IBs agree, {differ} differ")
    return lines, differ


def _period_or_none(text: str) -> Period | None:
    try:
        return parse_period(text)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_statement(result: Statement, out: Path) -> list[Path]:
    """Write `<ib>-<period>.csv` (lines), `...-summary.csv` (groups) and `...html` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.ib}-{result.period.id}"
    lines_csv, summary_csv = render_csv(result)
    paths = [out / f"{stem}.csv", out / f"{stem}-summary.csv", out / f"{stem}.html"]
    for path, text in zip(paths, (lines_csv, summary_csv, render_html(result)), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def render_csv(result: Statement) -> tuple[str, str]:
    """(every credit line, every group and the totals) as CSV text."""
    lines = _csv(_LINE_FIELDS, (_line_row(ln) for ln in result.lines))
    rows: list[tuple[object, ...]] = [
        (section, g.key, g.count, fmt(g.std_lots), f"{g.amount:.2f}")
        for section, groups in (*result.by.items(), ("day", result.daily()))
        for g in groups
    ]
    rows += [
        ("total", "all", "", "", f"{result.total:.2f}"),
        ("total", "settled", "", "", f"{result.settled_total:.2f}"),
        ("total", "tier_bonus", "", "", f"{result.tier_bonus_total:.2f}"),
    ]
    if (r := result.reconciliation) is not None:
        rows.append(("reconciliation", "equal" if r.equal else "difference", r.events,
                     "", f"{r.difference:.2f}"))  # fmt: skip
    return lines, _csv(("section", "key", "count", "std_lots", "amount"), rows)


def _line_row(ln: StatementLine) -> tuple[object, ...]:
    return (
        ln.credit_id, ln.day, ln.at.isoformat(), ln.kind, ln.client, ln.login, ln.symbol,
        ln.deal, ln.rule, ln.level, fmt(ln.std_lots), f"{ln.amount:.2f}", ln.formula,
    )  # fmt: skip


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.sub{color:#57606a;margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px}
.ok{color:#1a7f37}.bad{color:#cf222e}
table{border-collapse:collapse;margin:0 0 8px}
th,td{border-bottom:1px solid #d8dee4;padding:3px 10px;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;gap:24px;flex-wrap:wrap}
.f{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#424a53}
svg text{font:11px sans-serif;fill:#57606a}
"""


def render_html(result: Statement) -> str:
    """One self-contained page: totals, reconciliation, daily chart, groups, every line."""
    p = result.period
    recon = result.reconciliation
    recon_html = (
        '<p id="reconciliation">no settlement events given: not reconciled</p>'
        if recon is None
        else f'<p id="reconciliation" class="{"ok" if recon.equal else "bad"}">'
        f"{escape(recon.describe())}</p>"
    )
    cards = "".join(
        f'<div class="card">{label}<b id="{key}">{amount:.2f}</b></div>'
        for key, label, amount in (
            ("total", "Total paid, USD", result.total),
            ("settled-total", "Commission (settled), USD", result.settled_total),
            ("tier-bonus-total", "Tier bonus, USD", result.tier_bonus_total),
        )
    )
    groups = "".join(
        f"<div><h2>{title}</h2>{_group_table(result.by[key], key)}</div>"
        for key, title in _SECTIONS
    )
    rows = "".join(
        f"<tr><td>{escape(ln.at.strftime('%Y-%m-%d %H:%M:%S'))}</td><td>{escape(ln.kind)}</td>"
        f"<td>{escape(ln.client)}</td><td>{escape(ln.symbol)}</td><td>{escape(ln.deal)}</td>"
        f"<td>{escape(ln.rule)}</td><td class=n>L{ln.level}</td><td class=n>{fmt(ln.std_lots)}</td>"
        f"<td class=n>{ln.amount:.2f}</td><td class=f>{escape(ln.formula)}</td>"
        f"<td class=f>{escape(ln.credit_id)}</td></tr>"
        for ln in result.lines
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Statement {escape(result.ib)} {escape(p.id)}</title><style>{_CSS}</style>"
        f"</head><body><h1>Statement for {escape(result.ib)}</h1>"
        f'<p class="sub">{p.kind} payout period <span id="period">{escape(p.id)}</span>: '
        f"{p.start:%Y-%m-%d %H:%M} to {p.end:%Y-%m-%d %H:%M} UTC, {len(result.lines)} credits</p>"
        f'<div class="cards">{cards}</div>{recon_html}'
        f"<h2>Commission per day (UTC)</h2>{_daily_chart(result.daily())}"
        f'<div class="grid">{groups}<div><h2>Commission per day</h2>'
        f"{_group_table(result.daily(), 'day')}</div></div>"
        "<h2>Every credit</h2><table><tr><th>time (UTC)</th><th>kind</th><th>client</th>"
        "<th>symbol</th><th>deal</th><th>rule</th><th class=n>level</th>"
        "<th class=n>std lots</th><th class=n>USD</th><th>how it is computed</th>"
        f"<th>credit id</th></tr>{rows}</table></body></html>\n"
    )


def _group_table(groups: Sequence[Group], name: str) -> str:
    rows = "".join(
        f"<tr><td>{escape(g.key)}</td><td class=n>{g.count}</td>"
        f"<td class=n>{fmt(g.std_lots)}</td><td class=n>{g.amount:.2f}</td></tr>"
        for g in groups
    )
    return (
        f'<table id="by-{name}"><tr><th>{name}</th><th class=n>credits</th>'
        f"<th class=n>std lots</th><th class=n>USD</th></tr>{rows}</table>"
    )


def _daily_chart(days: Sequence[Group]) -> str:
    """Bars per day, above the axis for money paid, below for money taken back."""
    width, height, left, top, bottom = 1000, 220, 60, 12, 28
    plot_h = height - top - bottom
    # Geometry, not money: floats are fine for pixels.
    top_amount = max((g.amount for g in days), default=ZERO)
    high = float(top_amount)
    low = min((float(g.amount) for g in days), default=0.0)
    span = (max(high, 0.0) - min(low, 0.0)) or 1.0
    zero_y = top + plot_h * max(high, 0.0) / span
    step = (width - left - 10) / max(len(days), 1)
    label_every = max(1, len(days) // 16)
    parts = [
        f'<svg id="daily-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="USD per day">',
        f'<line x1="{left}" y1="{zero_y:.1f}" x2="{width - 10}" y2="{zero_y:.1f}" '
        'stroke="#8c959f"/>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{top_amount:.2f}</text>',
        f'<text x="{left - 6}" y="{zero_y + 4:.1f}" text-anchor="end">0</text>',
    ]
    for i, g in enumerate(days):
        value = float(g.amount)
        bar = plot_h * abs(value) / span
        y = zero_y - bar if value >= 0 else zero_y
        x = left + i * step
        colour = "#2da44e" if value >= 0 else "#cf222e"
        parts.append(
            f'<rect x="{x + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
            f'height="{bar:.1f}" fill="{colour}"><title>{escape(g.key)}: {g.amount:.2f} USD'
            "</title></rect>"
        )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 10}" text-anchor="middle">'
                f"{escape(g.key[5:])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)

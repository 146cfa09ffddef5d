"""`rebate-engine explain`: the command around engine/explain.py, offline (a replay) or live
(the deployment's Redis: each deal's journal, a login's deal index and wallet), and its
rendering. Both forms tell revisions with the same step builders (engine/explain.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from agents.settings import Settings
from agents.storage.store import RedisStore, connect
from engine.crm import apply_event_lines
from engine.explain import (
    DealExplanation,
    LoginExplanation,
    clients_of,
    explain_deal,
    explain_login,
    explain_settlements,
    journaled_settlement,
    replay_for_explain,
)
from engine.ledger import Ledger
from engine.seed import SeedError, load_seed

__all__ = ["register", "render_deal", "render_login"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "explain", help="how a deal (or a login's wallet) was settled, in words, for support"
    )
    parser.add_argument("--seed", type=Path, help="seed file (YAML or JSON); offline")
    parser.add_argument("--fills", type=Path, nargs="+", help="fill.v1 JSON lines, in order")
    parser.add_argument("--crm-events", type=Path, help="crm-event.v1 JSON lines, as in replay")
    parser.add_argument("--server", help="the deal's server (with --deal)")
    parser.add_argument("--deal", type=int, help="the deal to explain (with --server)")
    parser.add_argument("--login", type=int, help="a login: wallet, bonus progress, its deals")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    parser.add_argument(
        "--live",
        action="store_true",
        help="read the deployment's Redis (REDIS_URL) instead of replaying fills: each deal's "
        "journal (every revision's fill, outcome and reasons), a login's deals and wallet",
    )
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    by_deal = args.server is not None and args.deal is not None
    if by_deal == (args.login is not None) or (args.server is None) != (args.deal is None):
        print("error: give either --server S --deal D or --login L", file=sys.stderr)
        return 2
    if args.live:
        return _explain_live(args)
    if args.seed is None or not args.fills:
        print("error: --seed and --fills are needed offline", file=sys.stderr)
        return 2
    missing = [str(p) for p in [*args.fills, args.crm_events] if p and not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        seed = load_seed(args.seed)
    except SeedError as exc:
        print(f"error: bad seed: {exc}", file=sys.stderr)
        return 2
    ledger = Ledger.from_seed(seed)
    with ExitStack() as stack:
        if args.crm_events is not None:
            handle = stack.enter_context(args.crm_events.open("rb"))
            applied = apply_event_lines(
                ((str(args.crm_events), n, line) for n, line in enumerate(handle, 1)), ledger.book
            )
            for p in applied.problems:  # the same events `replay --crm-events` would refuse
                print(f"skipped {p.source}:{p.line}: {p.reason}: {p.message}", file=sys.stderr)
        lines = (
            (str(path), n, line)
            for path in args.fills
            for n, line in enumerate(stack.enter_context(path.open("rb")), 1)
        )
        target = (args.server, args.deal) if by_deal else None
        recorded = replay_for_explain(lines, ledger, deal=target, login=args.login)
    console = Console(highlight=False, soft_wrap=True)  # one line per step: pasteable
    if by_deal:
        return _print_deal(explain_deal(recorded, args.server, args.deal), args.json, console)
    _print_login(explain_login(recorded, args.login), args.json, console)
    return 0


def _print_login(login: LoginExplanation, as_json: bool, console: Console) -> None:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(login.to_dict(), option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
    else:
        render_login(login, console)


def _print_deal(explained: DealExplanation, as_json: bool, console: Console) -> int:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(explained.to_dict(), option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
    else:
        render_deal(explained, console)
    return 0 if explained.revisions else 1


def _explain_live(args: argparse.Namespace) -> int:
    settings = Settings()
    if not settings.redis_url:
        print("error: REDIS_URL is not set (--live reads the deployment's Redis)", file=sys.stderr)
        return 2
    console = Console(highlight=False, soft_wrap=True)
    if args.login is None:
        return _print_deal(
            asyncio.run(live_deal(settings, args.server, args.deal)), args.json, console
        )
    _print_login(asyncio.run(live_login(settings, args.login)), args.json, console)
    return 0


async def _deal_from(store: RedisStore, server: str, deal: int) -> DealExplanation:
    settlements = [
        journaled_settlement(e.fill, e.outcome, e.reasons, output, e.bonus_lots)
        for e, output in await store.deal_history(server, deal)
    ]
    explained = explain_settlements(server, deal, settlements, store.book)
    duplicates, stale = await store.deal_repeats(server, deal)
    return replace(explained, duplicates=duplicates, stale=stale)


async def live_deal(settings: Settings, server: str, deal: int) -> DealExplanation:
    """A deal told from its journal in Redis, under the rules log the workers settled with."""
    redis = connect(settings)
    try:
        store = RedisStore(redis, depth_limit=settings.attribution_depth_limit)
        await store.refresh_rules()
        return await _deal_from(store, server, deal)
    finally:
        await redis.aclose()


async def live_login(settings: Settings, login: int) -> LoginExplanation:
    """The login's wallet, bonus progress and deals (from its deal index) in the store, read
    with the engine's types."""
    redis = connect(settings)
    try:
        store = RedisStore(redis, depth_limit=settings.attribution_depth_limit)
        await store.refresh_rules()
        indexed = [await _deal_from(store, s, d) for s, d in await store.login_deals(login)]
        deals = tuple(d for d in indexed if d.revisions)  # a journal a retention removed
        times = [r.settlement.fill.close_time for d in deals for r in d.revisions]
        clients = clients_of(store.book, login, times)
        rewards = {c: await store.reward_balance(c) for c in clients}
        _, state = await store.account(login)
    finally:
        await redis.aclose()
    return LoginExplanation(login, clients, rewards, state, deals)


def render_deal(explained: DealExplanation, console: Console) -> None:
    if not explained.revisions:
        console.print(
            f"Deal {explained.deal} on {explained.server} is not in these fills.", markup=False
        )
        return
    for revision in explained.revisions:
        console.print(revision.title, markup=False)
        for step in revision.steps:
            console.print(f"  [{step.name}] {step.text}", markup=False)
    if explained.duplicates or explained.stale:
        console.print(
            f"Also received: {explained.duplicates} redelivered message(s) of revisions already"
            f" settled (duplicate: their stored credits published again, nothing changed) and"
            f" {explained.stale} stale message(s) (a seq not above the deal's: ignored).",
            markup=False,
        )
    totals = ", ".join(f"{v:.2f} {k}" for k, v in explained.totals.items()) or "nothing"
    console.print(f"Standing for deal {explained.deal} now: {totals}.", markup=False)


def render_login(login: LoginExplanation, console: Console) -> None:
    console.print(f"Login {login.login}", markup=False)
    for line in login.lines():
        console.print(f"  {line}", markup=False)
    console.print(f"  Deals of login {login.login}: {len(login.deals)}", markup=False)
    for deal in login.deals:
        last = deal.revisions[-1].settlement
        totals = ", ".join(f"{v:.2f} {k}" for k, v in deal.totals.items()) or "nothing"
        reasons = f" ({', '.join(last.reasons)})" if last.reasons else ""
        console.print(
            f"    {deal.server} deal {deal.deal}: {len(deal.revisions)} revision(s), last"
            f" {last.fill.event} {last.outcome}{reasons}; stands {totals}",
            markup=False,
        )

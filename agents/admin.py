"""`rebate-engine admin ...`: change one attribution item from an instant on (SPEC 3).

Every subcommand appends one effective-dated `engine.rules.Change` to the rules log
(`RedisStore.append_changes`, which bumps the rules version so workers refold). `--at` (ISO-8601
UTC with Z, default now) is when it takes effect: fills that closed before keep the rules they
were settled under, so nothing is retroactive; fills already settled that closed at or after it
are settled again by the worker (reason late_change, SPEC 3 r2), and an `--at` more than
correction_window_hours ago is refused `too_late`.

A change is checked before it is written, against the log folded with the change added:
references must exist at `--at`, a cancelled rebate cannot come back, and the change must not
create an IB cycle or an unresolvable account at `--at` or at any later change instant.
Refusals print `error: ...` and exit 2.

`admin show --login L [--at T]` prints the attribution in force for a login.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from agents.settings import Settings
from agents.storage.codec import encode_change, iso_z
from agents.storage.store import UNAVAILABLE, RedisStore, ResettleJob, connect
from engine import changes
from engine.errors import ConfigError
from engine.late import too_late, touched_logins
from engine.payouts import PERIODS
from engine.rules import Attribution, Change, RuleBook, change_refusal

__all__ = ["main", "register"]


class _Refused(Exception):
    """The command would write something wrong: nothing is written."""


# -- argument types ---------------------------------------------------------------------------


def _at(value: str) -> datetime:
    if not value.endswith("Z"):
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 UTC time ending in Z")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 time") from None


def _pct(value: str) -> Decimal:
    try:
        pct = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not pct.is_finite() or not 0 <= pct <= 100:
        raise argparse.ArgumentTypeError(f"{value!r} is not a percentage between 0 and 100")
    return pct


def _hours(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of hours >= 0")
    return int(value)


def _nonempty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


# -- building each change (engine/changes.py checks its references at --at) ------------------


_Builder = Callable[[argparse.Namespace, RuleBook, datetime], Change]


def _rebate_status(status: str) -> _Builder:
    def build(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
        return changes.set_rebate(book, at, args.client, status=status)

    return build


def _set_rebate(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.set_rebate(book, at, args.client, pct=args.pct)


def _move_client(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.move_client(book, at, args.client, args.ib)


def _move_ib(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.change_ib(book, at, args.ib, {"parent": args.parent})


def _move_account(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.change_account(book, at, args.login, {"client": args.client})


def _set_ib_plan(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.change_ib(book, at, args.ib, {"plan": args.plan})


def _set_ib_rebate(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.change_ib(book, at, args.ib, {"rebate_pct": args.pct})


def _set_ib_payout(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    given = {"payout": args.payout, "hold_hours": args.hold_hours, "partner_code": args.code}
    fields = {k: v for k, v in given.items() if v is not None}
    if not fields:
        raise _Refused("set-ib-payout needs --payout, --hold-hours or --partner-code")
    return changes.change_ib(book, at, args.ib, fields)


def _add_account(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.add_account(book, at, args.login, args.client, args.type, live=not args.demo)


def _add_client(args: argparse.Namespace, book: RuleBook, at: datetime) -> Change:
    return changes.add_client(book, at, args.client, verified=args.verified, ib=args.ib)


# -- show -------------------------------------------------------------------------------------


def _describe(login: int, at: datetime, a: Attribution) -> str:
    live = "live" if a.account.live else "demo"
    c = a.client
    lines = [
        f"login {login} at {_z(at)}",
        f"  account: client {a.account.client}, type {a.account.type}, {live}",
        f"  client:  {c.id}, {'verified' if c.verified else 'not verified'}, "
        f"rebate {c.rebate_status}"
        + (f", override {c.rebate_pct}%" if c.rebate_pct is not None else ""),
    ]
    if a.ib is None:
        lines.append("  ib:      none (no IB commission)")
    else:
        pct = c.rebate_pct if c.rebate_pct is not None else a.ib.rebate_pct
        paid = pct if c.rebate_status == "active" else Decimal(0)
        lines.append(
            f"  ib:      {a.ib.id} (L1), plan {a.ib.plan}, default rebate {a.ib.rebate_pct}%, "
            f"status {a.ib.status}"
        )
        lines.append(f"  rebate paid to the client: {paid}% of the L1 commission")
        for up in a.uplines:
            lines.append(f"  upline:  {up.ib.id} (L{up.level}), plan {up.plan.id}")
    return "\n".join(lines)


# -- running ----------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    at: datetime = args.at or datetime.now(UTC)
    redis = connect(settings)
    try:
        store = RedisStore(redis, depth_limit=settings.attribution_depth_limit)
        existing = await store.rule_changes()
        try:
            book = RuleBook(existing, depth_limit=settings.attribution_depth_limit)
        except ConfigError as exc:
            print(f"error: the rules log in Redis does not fold: {exc}", file=sys.stderr)
            return 1
        if args.action == "show":
            try:
                attribution = book.resolve(args.login, at)
            except ConfigError as exc:
                print(f"error: login {args.login} at {_z(at)}: {exc}", file=sys.stderr)
                return 1
            if attribution is None:
                raise _Refused(f"unknown login {args.login} at {_z(at)}")
            print(_describe(args.login, at, attribution))
            return 0
        now = datetime.now(UTC)
        if too_late(at, now, settings.correction_window_hours):
            # The same rule as back-office events (engine/crm.py check_window).
            raise _Refused(
                f"too_late: --at {_z(at)} is more than {settings.correction_window_hours} h "
                f"before {_z(now)} (correction_window_hours); a person decides"
            )
        builder: _Builder = args.build
        change = builder(args, book, at)
        refusal = change_refusal(existing, [change])
        if refusal is not None:
            raise _Refused(refusal)
        # Fills already settled at or after --at are settled again by the worker (agents/late.py).
        job_id = "admin-" + hashlib.blake2b(encode_change(change), digest_size=8).hexdigest()
        job = ResettleJob(job_id, at, tuple(sorted(touched_logins(book, change))))
        version = await store.append_change_with_job(change, job)
    except (_Refused, changes.ChangeRefused) as exc:
        print(f"error: {exc}; nothing changed", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()
    fields = ", ".join(f"{k}={v}" for k, v in change.fields.items())
    print(f"{change.subject} {change.id}: {fields} from {_z(at)} (rules version {version})")
    return 0


def _handle(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: bad settings: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print("error: REDIS_URL must be set for admin commands", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, settings))
    except UNAVAILABLE as exc:
        print(f"error: Redis at REDIS_URL did not answer: {exc}", file=sys.stderr)
        return 1


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `admin` and its subcommands to the CLI's subparsers."""
    admin = subparsers.add_parser(
        "admin",
        help="change attribution and rebates from an instant on (never retroactive)",
        description="Change one attribution item from --at on (ISO-8601 UTC ending in Z, "
        "default now). Fills that closed earlier keep the rules they were settled under. "
        "Needs REDIS_URL; a refused change writes nothing and exits 2.",
    )
    sub = admin.add_subparsers(title="admin commands", metavar="ACTION", required=True)

    def add(name: str, help_: str, build: _Builder | None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--at",
            type=_at,
            default=None,
            help="effective time, ISO-8601 UTC ending in Z (default: now)",
        )
        p.set_defaults(handler=_handle, action=name, build=build)
        return p

    def client_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--client", required=True, type=_nonempty, help="client id")

    def ib_arg(p: argparse.ArgumentParser, flag: str = "--ib", what: str = "IB id") -> None:
        p.add_argument(flag, required=True, type=_nonempty, help=what)

    def pct_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pct", required=True, type=_pct, help="percentage, 0-100")

    p = add("set-rebate", "set a client's rebate override pct", _set_rebate)
    client_arg(p)
    pct_arg(p)
    for name, status, help_ in (
        ("suspend-rebate", "suspended", "suspend a client's rebate (it pays 0 until resumed)"),
        ("resume-rebate", "active", "resume a suspended client rebate"),
        ("cancel-rebate", "cancelled", "cancel a client's rebate for good (cannot be resumed)"),
    ):
        client_arg(add(name, help_, _rebate_status(status)))
    p = add("move-client", "move a client to another IB", _move_client)
    client_arg(p)
    ib_arg(p)
    p = add("move-ib", "move an IB under another parent IB", _move_ib)
    ib_arg(p)
    ib_arg(p, "--parent", "the new parent IB id")
    p = add("move-account", "move a trading account to another client", _move_account)
    p.add_argument("--login", required=True, type=int, help="trading account login")
    client_arg(p)
    p = add("set-ib-plan", "put an IB on another plan", _set_ib_plan)
    ib_arg(p)
    p.add_argument("--plan", required=True, type=_nonempty, help="plan id")
    p = add("set-ib-rebate", "set an IB's default client rebate pct", _set_ib_rebate)
    ib_arg(p)
    pct_arg(p)
    p = add("set-ib-payout", "set an IB's payout period, hold or partner code", _set_ib_payout)
    ib_arg(p)
    p.add_argument("--payout", choices=PERIODS, help="payout period (SPEC 6)")
    p.add_argument("--hold-hours", type=_hours, help="hours after a period before it is paid")
    p.add_argument("--partner-code", dest="code", type=_nonempty, help="referral code")
    p = add("add-account", "add a trading account", _add_account)
    p.add_argument("--login", required=True, type=int, help="trading account login")
    client_arg(p)
    p.add_argument(
        "--type", required=True, type=_nonempty, help="account type (standard, raw_spread, ...)"
    )
    p.add_argument("--demo", action="store_true", help="a demo account (earns nothing)")
    p = add("add-client", "add a client", _add_client)
    client_arg(p)
    p.add_argument("--ib", type=_nonempty, default=None, help="the client's IB")
    p.add_argument("--verified", action="store_true", help="the client is verified (KYC)")
    p = add("show", "print the attribution in force for a login", None)
    p.add_argument("--login", required=True, type=int, help="trading account login")


def main(argv: Sequence[str] | None = None) -> int:
    """`admin ...` on its own (tests, `python -m agents.admin admin show --login 1`)."""
    parser = argparse.ArgumentParser(prog="rebate-engine")
    register(parser.add_subparsers(title="commands", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def _z(at: datetime) -> str:
    return iso_z(at).replace(".000000Z", "Z")


if __name__ == "__main__":
    raise SystemExit(main())

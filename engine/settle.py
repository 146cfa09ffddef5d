"""Settling one fill revision: SPEC 4 in order, from attribution to credits and state.

`settle` is pure: it takes the rules, the account's wallet state and the deal's journal, and
returns the credits plus the new state and journal entry. The caller (offline ledger or the
Redis Lua script) applies that result atomically, once per revision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any, Literal, get_args

from engine.bonus import add_turnover, remove_turnover, turnover_lots
from engine.commission import Override, gross_commission, rebate_rate, split, upline_overrides
from engine.costs import costs_of
from engine.credits import Credit, Kind, WalletEvent, credit_id, fill_ref
from engine.eligibility import Withheld, withheld_reason
from engine.fill import Fill
from engine.loyalty import accrual, take_coverage
from engine.money import ZERO, fmt
from engine.rules import Attribution, RuleBook
from engine.state import (
    AccountState,
    Bonus,
    DealJournal,
    Effects,
    JmAllocation,
    Output,
    Standing,
)

__all__ = ["OUTCOMES", "Outcome", "Reason", "Settlement", "settle"]

Outcome = Literal["credited", "not_earning", "ignored", "duplicate"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
Reason = (
    Literal[
        "entry_in",
        "nothing_to_reverse",
        "unknown_login",
        "demo_account",
        "zero_amounts",
        "no_plan_rule",
    ]
    | Withheld
)


@dataclass(frozen=True, slots=True)
class Settlement:
    """The result of one fill revision.

    Attributes:
        outcome: credited (at least one credit) | not_earning | ignored ("in" deals) | duplicate
            (this revision was processed before: `output` is what it emitted then).
        reason: why nothing, or less, was paid: unknown_login, demo_account, min_hold, ...
        output: credits and wallet events, in emission order.
        account: the account's wallet state after this revision.
        standing: what stands for the deal after this revision (None: nothing).
        reward_deltas: JM USD to add (or, for reversals, remove) per client reward wallet.
    """

    fill: Fill
    outcome: Outcome
    reason: Reason | None
    output: Output
    account: AccountState
    standing: Standing | None
    reward_deltas: tuple[tuple[str, Decimal], ...] = ()

    @property
    def credits(self) -> tuple[Credit, ...]:
        return self.output.credits


def settle(
    fill: Fill, book: RuleBook, account: AccountState, journal: DealJournal | None
) -> Settlement:
    """Settle one fill revision against the rules in force at its close_time.

    Raises:
        ConfigError: the attribution cannot be resolved (IB cycle, unknown plan...).
    """
    if journal is not None and fill.revision in journal.processed:
        return Settlement(
            fill, "duplicate", None, journal.processed[fill.revision], account, journal.standing
        )
    if not fill.earns:
        return Settlement(fill, "ignored", "entry_in", Output(), account, None)

    standing = journal.standing if journal else None
    credits: list[Credit] = []
    deltas: list[tuple[str, Decimal]] = []
    ref = fill_ref(fill)
    if standing is not None:
        # Any new revision of a credited deal (update, delete, or a re-sent add with other
        # content) first takes back what stands, so a deal is never paid twice.
        credits.extend(_reversals(fill, ref, standing))
        account = _undo(account, standing.effects)
        if standing.effects.accrual_client and standing.effects.accrual:
            deltas.append((standing.effects.accrual_client, -standing.effects.accrual))
    if fill.event == "delete":
        reason: Reason | None = None if credits else "nothing_to_reverse"
        outcome: Outcome = "credited" if credits else "not_earning"
        return Settlement(
            fill, outcome, reason, Output(tuple(credits)), account, None, tuple(deltas)
        )

    attribution = book.resolve(fill.login, fill.close_time)
    if attribution is None or not attribution.account.live:
        reason = "unknown_login" if attribution is None else "demo_account"
        outcome = "credited" if credits else "not_earning"
        return Settlement(
            fill, outcome, reason, Output(tuple(credits)), account, None, tuple(deltas)
        )

    fresh, reason, effects, account, events = _earn(fill, ref, book, attribution, account)
    credits.extend(fresh)
    if effects.accrual_client and effects.accrual:
        deltas.append((effects.accrual_client, effects.accrual))
    new_standing = (
        Standing(fill.revision, tuple(fresh), effects) if fresh or effects.bonus_lots else None
    )
    outcome = "credited" if credits else "not_earning"
    if outcome == "not_earning" and reason is None:
        reason = "zero_amounts"
    return Settlement(
        fill,
        outcome,
        reason,
        Output(tuple(credits), tuple(events)),
        account,
        new_standing,
        tuple(deltas),
    )


def _earn(
    fill: Fill, ref: dict[str, Any], book: RuleBook, attr: Attribution, account: AccountState
) -> tuple[list[Credit], Reason | None, Effects, AccountState, list[WalletEvent]]:
    costs = costs_of(fill)
    credits: list[Credit] = []
    reason: Reason | None = None

    def credit(
        kind: Kind, beneficiary: tuple[str, str], amount: Decimal, currency: str,
        basis: Callable[[], dict[str, Any]],
    ) -> None:  # fmt: skip
        # SPEC 4.9: zero credits are not emitted. The basis (with its formula text) is built
        # only for credits that are: it is the costliest part of a credit.
        if amount:
            body = basis()
            btype, bid = beneficiary
            cid = credit_id(fill, kind, f"{btype}:{bid}", body["level"], None)
            credits.append(Credit(cid, kind, btype, bid, amount, currency, ref, body))

    # SPEC 4.3-4.5: direct IB, client rebate, upline overrides.
    if attr.ib is not None and attr.plan is not None:
        ib, plan = attr.ib, attr.plan
        rule = book.match_rule(plan, attr.symbols, attr.account.type, fill.symbol)
        reason = "no_plan_rule" if rule is None else withheld_reason(fill, attr.account, ib, plan)
        if rule is not None and reason is None:
            gross = gross_commission(rule, costs)
            pct, source = rebate_rate(attr.client, ib)
            parts = split(gross.amount, pct)
            g = f"{parts.gross:.2f}"
            base_text, pct_text = fmt(gross.base), fmt(pct)
            credit("ib_commission", ("ib", ib.id), parts.net, "USD", lambda: {
                "level": 1, "method": rule.method, "plan": plan.id, "rule": rule.label,
                "rate": rule.rate_text, "base": base_text, "gross": g,
                "rebate": f"{parts.rebate:.2f}",
                "formula": f"{gross.formula(base_text)} = {g} gross - {parts.rebate:.2f} client"
                           f" rebate = {parts.net:.2f}",
            })  # fmt: skip
            credit("client_rebate", ("client", attr.client.id), parts.rebate, "USD", lambda: {
                "level": 1, "method": "rebate_pct", "plan": plan.id, "ib": ib.id,
                "rate": pct_text, "base": g, "source": source,
                "formula": f"{g} x {pct_text}% = {parts.rebate:.2f}",
            })  # fmt: skip
            for o in upline_overrides(attr.uplines, parts.gross):
                basis = partial(_override_basis, o, ib.id, g)
                credit("ib_override", ("ib", o.upline.ib.id), o.amount, "USD", basis)

    # SPEC 4.6: JM USD coverage; SPEC 4.7: loyalty accrual.
    cost_usd = costs.cost_usd
    cost_text = fmt(cost_usd)
    loyalty = attr.loyalty
    wanted, covered, taken, account = take_coverage(
        account, cost_usd, loyalty.coverage_pct, fill.open_time
    )
    credit("jm_coverage", ("account", str(fill.login)), covered, "USD", lambda: {
        "level": 0, "method": "coverage_pct", "rate": loyalty.coverage_text,
        "base": cost_text, "wanted": f"{wanted:.2f}",
        "formula": f"min({cost_text} cost x {loyalty.coverage_text}% = {wanted:.2f},"
                   f" JM balance) = {covered:.2f}",
    })  # fmt: skip
    accrued = ZERO
    if not (loyalty.exclude_ib_referred and attr.client.ib is not None):
        accrued = accrual(cost_usd, covered, loyalty.accrual_pct)
        credit("loyalty_accrual", ("client", attr.client.id), accrued, "JMUSD", lambda: {
            "level": 0, "method": "accrual_pct", "rate": loyalty.accrual_text,
            "base": fmt(cost_usd - covered),
            "formula": f"({cost_text} cost - {covered:.2f} covered) x "
                       f"{loyalty.accrual_text}% = {accrued:.2f}",
        })  # fmt: skip

    # SPEC 4.8: deposit-bonus turnover.
    lots = turnover_lots(costs.lots, fill.is_cent or "cent" in attr.account.type)
    account, bonus_lots, unlocked = add_turnover(account, lots, fill.close_time)
    events = [_bonus_unlocked(fill, ref, b) for b in unlocked]
    effects = Effects(taken, attr.client.id if accrued else None, accrued, bonus_lots)
    return credits, reason, effects, account, events


def _override_basis(o: Override, from_ib: str, l1_gross: str) -> dict[str, Any]:
    return {
        "level": o.upline.level,
        "method": "upline_override_pct",
        "plan": o.upline.plan.id,
        "from_ib": from_ib,
        "rate": fmt(o.rate),
        "base": l1_gross,
        "formula": f"L{o.upline.level}: {l1_gross} L1 gross x {fmt(o.rate)}% = {o.amount:.2f}",
    }


def _bonus_unlocked(fill: Fill, ref: dict[str, Any], bonus: Bonus) -> WalletEvent:
    return WalletEvent(
        WalletEvent.make_id("bonus_unlocked", fill.login, bonus.bonus_id),
        "bonus_unlocked",
        {
            "login": fill.login,
            "bonus_id": bonus.bonus_id,
            "amount_usd": fmt(bonus.amount_usd),
            "turnover_lots": fmt(bonus.turnover_lots),
            "required_lots": fmt(bonus.required_lots),
            "fill": ref,
        },
    )


def _reversals(fill: Fill, ref: dict[str, Any], standing: Standing) -> list[Credit]:
    """SPEC 4.10: one negative credit naming each credit that stands for the deal."""
    return [
        Credit(
            credit_id(
                fill, "reversal", f"{c.beneficiary_type}:{c.beneficiary_id}", c.level, c.credit_id
            ),
            "reversal",
            c.beneficiary_type,
            c.beneficiary_id,
            -c.amount,
            c.currency,
            ref,
            {
                "level": c.level,
                "method": "reversal",
                "reversed_kind": c.kind,
                "reason": fill.event if fill.event != "add" else "resent",
                "reversed_close_time": c.fill["close_time"],
                "base": f"{c.amount:.2f}",
                "formula": f"-({c.amount:.2f}) of {c.credit_id}",
            },
            reverses=c.credit_id,
        )
        for c in standing.credits
    ]


def _undo(account: AccountState, effects: Effects) -> AccountState:
    """Return coverage taken to its allocations and remove the reversed turnover."""
    if effects.coverage:
        returned = dict(effects.coverage)
        account = replace(
            account,
            allocations=tuple(
                JmAllocation(
                    a.allocation_id, a.allocated_at, a.remaining + returned[a.allocation_id]
                )
                if a.allocation_id in returned
                else a
                for a in account.allocations
            ),
        )
    return remove_turnover(account, effects.bonus_lots)

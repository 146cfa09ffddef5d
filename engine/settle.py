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

from engine.bonus import add_turnover, remove_turnover
from engine.commission import (
    Override,
    gross_commission,
    rebate_rate,
    split_rebate,
    upline_overrides,
)
from engine.costs import Costs, costs_of
from engine.credits import Credit, Kind, WalletEvent, credit_id, fill_ref
from engine.eligibility import REASONS, Reason, withheld_reason
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

__all__ = [
    "OUTCOMES",
    "REASONS",
    "UNCHANGED_OUTCOMES",
    "Outcome",
    "Reason",
    "Settlement",
    "cost_inputs",
    "settle",
]

Outcome = Literal["credited", "not_earning", "ignored", "duplicate", "stale"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
UNCHANGED_OUTCOMES: frozenset[Outcome] = frozenset({"duplicate", "stale"})
"""Outcomes that change nothing: neither state nor journal is written for them."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """The result of one fill revision.

    Attributes:
        outcome: credited (at least one credit) | not_earning | ignored ("in" deals) | duplicate
            (this revision was processed before: `output` is what it emitted then) | stale (a
            `seq` not above the deal's current seq, never seen: changes nothing).
        reasons: why this fill earned less than its plan, in the order found (empty: it
            earned all of it, or it has no plan to earn under: an "in" deal, a delete).
        output: credits and wallet events, in emission order.
        account: the account's wallet state after this revision.
        standing: what stands for the deal after this revision (None: nothing).
        reward_deltas: JM USD to add (or, for reversals, remove) per client reward wallet.
    """

    fill: Fill
    outcome: Outcome
    reasons: tuple[Reason, ...]
    output: Output
    account: AccountState
    standing: Standing | None
    reward_deltas: tuple[tuple[str, Decimal], ...] = ()

    @property
    def credits(self) -> tuple[Credit, ...]:
        return self.output.credits

    @property
    def reason(self) -> Reason | None:
        """The first of `reasons` (None when there is none), for callers that show one."""
        return self.reasons[0] if self.reasons else None


def settle(
    fill: Fill, book: RuleBook, account: AccountState, journal: DealJournal | None
) -> Settlement:
    """Settle one fill revision against the rules in force at its close_time.

    Raises:
        ConfigError: the attribution cannot be resolved (IB cycle, unknown plan...).
    """
    if journal is not None and fill.revision in journal.processed:
        return Settlement(
            fill,
            "duplicate",
            ("duplicate",),
            journal.processed[fill.revision],
            account,
            journal.standing,
        )
    # SPEC 2 [r2]: with `seq` the revision is (server, deal, seq), and the revision hash covers
    # seq, so a redelivery of any earlier (seq, content) was caught just above as a duplicate
    # and publishes again what it emitted then. What is left with a seq not above the deal's is
    # a message never seen: an out-of-order older revision, or the same seq with other content
    # (a bridge fault; the first content processed for a seq keeps it). Both are `stale`:
    # applying them would move the deal back in time, so they change nothing, emit nothing, and
    # are counted.
    if journal is not None and _is_stale(fill.seq, journal.seq):
        return Settlement(fill, "stale", ("stale",), Output(), account, journal.standing)

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
    if fill.event == "delete" or not fill.earns:
        # An "in" deal earns nothing; if an update turned a credited deal into one, what
        # stood is taken back like for a delete.
        outcome: Outcome
        if fill.earns:
            outcome = "credited" if credits else "not_earning"
        else:
            outcome = "credited" if credits else "ignored"
        return Settlement(fill, outcome, (), Output(tuple(credits)), account, None, tuple(deltas))

    attribution = book.resolve(fill.login, fill.close_time)
    if attribution is None or not attribution.account.live:
        reasons: tuple[Reason, ...] = ("unattributed",) if attribution is None else ("demo",)
        outcome = "credited" if credits else "not_earning"
        return Settlement(
            fill, outcome, reasons, Output(tuple(credits)), account, None, tuple(deltas)
        )

    fresh, reasons, effects, account, events = _earn(fill, ref, book, attribution, account)
    credits.extend(fresh)
    if effects.accrual_client and effects.accrual:
        deltas.append((effects.accrual_client, effects.accrual))
    new_standing = (
        Standing(fill.revision, tuple(fresh), effects) if fresh or effects.bonus_lots else None
    )
    outcome = "credited" if credits else "not_earning"
    return Settlement(
        fill,
        outcome,
        reasons,
        Output(tuple(credits), tuple(events)),
        account,
        new_standing,
        tuple(deltas),
    )


def _is_stale(seq: int | None, current: int | None) -> bool:
    return seq is not None and current is not None and seq <= current


def _earn(
    fill: Fill, ref: dict[str, Any], book: RuleBook, attr: Attribution, account: AccountState
) -> tuple[list[Credit], tuple[Reason, ...], Effects, AccountState, list[WalletEvent]]:
    costs = costs_of(fill, attr.lot_scale(fill.currency))
    inputs: dict[str, Any] = {}  # filled on the first credit: most fills emit none
    credits: list[Credit] = []
    reasons: list[Reason] = []

    def credit(
        kind: Kind, beneficiary: tuple[str, str], amount: Decimal, currency: str,
        basis: Callable[[], dict[str, Any]],
    ) -> None:  # fmt: skip
        # SPEC 4.9: zero credits are not emitted. The basis (with its formula text) is built
        # only for credits that are: it is the costliest part of a credit.
        if amount:
            body = basis()
            if not inputs:
                inputs.update(cost_inputs(fill, costs))
            body["inputs"] = inputs  # one dict per fill, shared: serialized, never mutated
            btype, bid = beneficiary
            cid = credit_id(fill, kind, f"{btype}:{bid}", body["level"], None)
            credits.append(Credit(cid, kind, btype, bid, amount, currency, ref, body))

    # SPEC 4.3-4.5: direct IB, client rebate, upline overrides.
    if attr.ib is not None and attr.plan is not None:
        ib, plan = attr.ib, attr.plan
        rule = book.match_rule(plan, attr.symbols, attr.account.type, fill.symbol)
        withheld = "no_rule" if rule is None else withheld_reason(fill, attr.account, ib, plan)
        if withheld is not None:
            reasons.append(withheld)
        if rule is not None and withheld is None:
            gross = gross_commission(rule, costs)
            rebate = rebate_rate(attr.client, ib, rule)
            parts = split_rebate(gross.amount, rebate, costs.std_lots)
            g = f"{parts.gross:.2f}"
            base_text, rate_text = fmt(gross.base), fmt(rebate.rate)
            rule_id = {"rule_id": rule.id} if rule.id is not None else {}
            rebate_method = "client_rebate_usd_per_lot" if rebate.per_lot else "rebate_pct"
            credit("ib_commission", ("ib", ib.id), parts.net, "USD", lambda: {
                "level": 1, "method": rule.method, "plan": plan.id, "rule": rule.label,
                **rule_id, "rate": rule.rate_text, "base": base_text, "gross": g,
                "rebate": f"{parts.rebate:.2f}", "rebate_method": rebate_method,
                "rebate_rate": rate_text, "rebate_source": rebate.source,
                "formula": f"{gross.formula(base_text)} = {g} gross - {parts.rebate:.2f} client"
                           f" rebate = {parts.net:.2f}",
            })  # fmt: skip
            credit("client_rebate", ("client", attr.client.id), parts.rebate, "USD", lambda: {
                "level": 1, "method": rebate_method, "plan": plan.id, "ib": ib.id, **rule_id,
                "rate": rate_text, "base": fmt(costs.std_lots) if rebate.per_lot else g,
                "gross": g, "source": rebate.source,
                "formula": _rebate_formula(rebate.per_lot, rate_text, costs, g, parts.rebate),
            })  # fmt: skip
            overrides, upline_reasons = upline_overrides(
                attr.uplines, parts.gross, attr.account.client
            )
            reasons.extend(r for _, r in upline_reasons if r not in reasons)
            for o in overrides:
                basis = partial(_override_basis, o, ib.id, g, rule_id)
                credit("ib_override", ("ib", o.upline.ib.id), o.amount, "USD", basis)

    # SPEC 4.6: JM USD coverage; SPEC 4.7: loyalty accrual.
    cost_usd = costs.cost_usd
    cost_text = fmt(cost_usd)
    loyalty = attr.loyalty
    coverage, account = take_coverage(account, cost_usd, loyalty.coverage_pct, fill.open_time)
    covered = coverage.covered
    credit("jm_coverage", ("account", str(fill.login)), covered, "USD", lambda: {
        "level": 0, "method": "coverage_pct", "rate": loyalty.coverage_text,
        "base": cost_text, "wanted": f"{coverage.wanted:.2f}",
        "jm_balance_before": fmt(coverage.balance_before),
        "jm_balance_after": fmt(coverage.balance_after),
        "formula": f"min({cost_text} cost x {loyalty.coverage_text}% = {coverage.wanted:.2f},"
                   f" JM balance {fmt(coverage.balance_before)}) = {covered:.2f};"
                   f" JM balance {fmt(coverage.balance_before)} -> "
                   f"{fmt(coverage.balance_after)}",
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

    # SPEC 4.8: deposit-bonus turnover, in standard lots.
    account, bonus_lots, unlocked = add_turnover(account, costs.std_lots, fill.close_time)
    events = [_bonus_unlocked(fill, ref, b) for b in unlocked]
    effects = Effects(coverage.taken, attr.client.id if accrued else None, accrued, bonus_lots)
    return credits, tuple(reasons), effects, account, events


def cost_inputs(fill: Fill, costs: Costs) -> dict[str, Any]:
    """What every base of a fill's credits is computed from (SPEC 5 r2), as the fill had it."""
    return {
        "currency": fill.currency,
        "usd_rate": fmt(costs.usd_rate),
        "lots": fmt(costs.lots),
        "lot_scale": fmt(costs.lot_scale),
        "std_lots": fmt(costs.std_lots),
        "spread_points": fill.spread_points,
        "point_value": None if fill.point_value is None else fmt(fill.point_value),
        "commission": fmt(fill.commission),
        "spread_cost": fmt(costs.spread_cost),
        "commission_paid": fmt(costs.commission_paid),
    }


def _rebate_formula(
    per_lot: bool, rate_text: str, costs: Costs, gross: str, rebate: Decimal
) -> str:
    if per_lot:
        return (
            f"min({fmt(costs.std_lots)} std lots x {rate_text} USD/lot, {gross} L1 gross)"
            f" = {rebate:.2f}"
        )
    return f"{gross} x {rate_text}% = {rebate:.2f}"


def _override_basis(
    o: Override, from_ib: str, l1_gross: str, rule_id: dict[str, str]
) -> dict[str, Any]:
    return {
        "level": o.upline.level,
        "method": "upline_override_pct",
        "plan": o.upline.plan.id,
        "from_ib": from_ib,
        **rule_id,
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

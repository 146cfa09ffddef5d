"""`rebate-engine explain`: how a deal was settled, in words a support agent reads to a partner.

One source of truth: the fills are replayed through the same Ledger as `replay`, and each
revision is told from its `Settlement` (outcome, reasons, credits and their basis, wallet
effects). The rules in force are looked up in the same RuleBook with the same functions the
settlement used (resolve, match_rule, rebate_rate, upline_overrides); every amount quoted
comes from a credit's basis, never from a second computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine import __version__
from engine.commission import rebate_rate, upline_overrides
from engine.costs import costs_of
from engine.credits import Credit
from engine.eligibility import WITHHOLD_CHECKS, Reason
from engine.fill import Fill
from engine.ledger import Ledger
from engine.money import ZERO, fmt
from engine.replay import Problem, ReplayResult, replay_lines
from engine.rules import Attribution, Rule, RuleBook
from engine.settle import Outcome, Settlement, cost_inputs
from engine.state import AccountState, Effects, Output, Standing

__all__ = [
    "REASON_WORDS",
    "DealExplanation",
    "LoginExplanation",
    "RevisionExplanation",
    "Step",
    "clients_of",
    "explain_deal",
    "explain_login",
    "explain_settlements",
    "journaled_settlement",
    "replay_for_explain",
]

REASON_WORDS: Mapping[str, str] = {
    "min_hold": "the position was held less than the plan's minimum hold",
    "min_points": "the price moved less than the plan's minimum points",
    "self_trade": "the account belongs to the IB itself (a self trade)",
    "self_trade_upline": "an upline IB's own client traded: that upline earns no override",
    "ib_inactive": "an IB was suspended or terminated at the close time",
    "no_rule": "no rule of the IB's plan covers this symbol and account type",
    "demo": "a demo account earns nothing",
    "unattributed": "the login belonged to no client at the close time",
    "duplicate": "this exact revision was processed before",
    "stale": "an older revision (its seq is not above the deal's)",
}
"""Each `Reason` in a sentence (a unit test holds it to eligibility.REASONS)."""

_REBATE_SOURCES = {
    "client_override": "this client's own rate with its IB",
    "plan_rule": "the plan rule's USD per standard lot",
    "ib_default": "the IB's default rate",
    "rebate_suspended": "the client's rebate is suspended, so it is 0",
    "rebate_cancelled": "the client's rebate is cancelled, so it is 0",
}
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of SPEC 4 for one revision: a sentence and the numbers it quotes."""

    name: str
    text: str
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.name, "text": self.text, "numbers": dict(self.numbers)}


@dataclass(frozen=True, slots=True)
class RevisionExplanation:
    number: int  # 1-based, in the order the revisions were processed
    settlement: Settlement
    steps: tuple[Step, ...]

    @property
    def title(self) -> str:
        f = self.settlement.fill
        seq = f", seq {f.seq}" if f.seq is not None else ""
        return (
            f"Revision {self.number}: {f.event} of deal {f.deal} on {f.server}"
            f" (login {f.login}, {f.symbol}, {fmt(f.lots)} lots, closed {f.close_time_text}"
            f"{seq}): {self.settlement.outcome}"
        )

    def to_dict(self) -> dict[str, Any]:
        s, f = self.settlement, self.settlement.fill
        return {
            "revision_number": self.number,
            "title": self.title,
            "event": f.event,
            "revision": f.revision,
            "seq": f.seq,
            "login": f.login,
            "symbol": f.symbol,
            "close_time": f.close_time_text,
            "outcome": s.outcome,
            "reasons": list(s.reasons),
            "steps": [step.to_dict() for step in self.steps],
            "credits": [c.to_dict(__version__) for c in s.credits],
        }


@dataclass(frozen=True, slots=True)
class DealExplanation:
    server: str
    deal: int
    revisions: tuple[RevisionExplanation, ...]
    # Live only: messages the journal counted without an entry each (SPEC 4.3 [r2] reasons
    # `duplicate`: a revision delivered again; `stale`: a seq not above the deal's). Offline,
    # such messages are revisions of their own above.
    duplicates: int = 0
    stale: int = 0

    @property
    def totals(self) -> dict[str, Decimal]:
        """What stands for the deal now, per currency: every credit emitted, reversals included
        (a duplicate re-publishes credits already counted, so it adds nothing)."""
        return _totals(r.settlement for r in self.revisions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "deal": self.deal,
            "found": bool(self.revisions),
            "duplicates": self.duplicates,
            "stale": self.stale,
            "totals": {k: f"{v:.2f}" for k, v in self.totals.items()},
            "revisions": [r.to_dict() for r in self.revisions],
        }


@dataclass(frozen=True, slots=True)
class LoginExplanation:
    login: int
    clients: tuple[str, ...]
    rewards: Mapping[str, Decimal]  # client -> JM USD in the reward wallet
    ledger_state: AccountState  # after the replay (or as the live store holds it)
    deals: tuple[DealExplanation, ...]  # by close_time (live: the login's deal index)

    def lines(self) -> list[str]:
        """The wallet and bonus progress in sentences."""
        state = self.ledger_state
        out = [
            f"Client {c} reward wallet: {self.rewards.get(c, ZERO):.2f} JM USD"
            for c in self.clients
        ]
        for a in state.allocations:
            out.append(
                f"JM allocation {a.allocation_id} (allocated {_iso(a.allocated_at)}):"
                f" {a.remaining:.2f} JM USD remaining"
            )
        out.append(f"JM USD balance of login {self.login}: {state.jm_balance:.2f}")
        for b in state.bonuses:
            status = "unlocked" if b.unlocked else "open"
            out.append(
                f"Bonus {b.bonus_id} ({fmt(b.amount_usd)} USD, granted {_iso(b.granted_at)}):"
                f" {fmt(b.turnover_lots)} of {fmt(b.required_lots)} standard lots traded,"
                f" {status}"
            )
        if not state.bonuses:
            out.append(f"No deposit bonus on login {self.login}.")
        return out

    def to_dict(self) -> dict[str, Any]:
        state = self.ledger_state
        return {
            "login": self.login,
            "wallet": {
                "reward_jm": {c: f"{self.rewards.get(c, ZERO):.2f}" for c in self.clients},
                "allocations": [
                    {
                        "allocation_id": a.allocation_id,
                        "allocated_at": _iso(a.allocated_at),
                        "remaining": f"{a.remaining:.2f}",
                    }
                    for a in state.allocations
                ],
                "jm_balance": f"{state.jm_balance:.2f}",
            },
            "bonuses": [
                {
                    "bonus_id": b.bonus_id,
                    "amount_usd": fmt(b.amount_usd),
                    "std_lots_done": fmt(b.turnover_lots),
                    "std_lots_needed": fmt(b.required_lots),
                    "unlocked": b.unlocked,
                }
                for b in state.bonuses
            ],
            "text": self.lines(),
            "deals": [
                {
                    "server": d.server,
                    "deal": d.deal,
                    "revisions": len(d.revisions),
                    "outcome": d.revisions[-1].settlement.outcome,
                    "reasons": list(d.revisions[-1].settlement.reasons),
                    "totals": {k: f"{v:.2f}" for k, v in d.totals.items()},
                }
                for d in self.deals
            ],
        }


@dataclass
class Recorded:
    """What a replay kept for explaining: the settlements of the deals asked about."""

    ledger: Ledger
    result: ReplayResult
    by_deal: dict[tuple[str, int], list[Settlement]] = field(default_factory=dict)


def replay_for_explain(
    lines: Iterable[tuple[str, int, bytes]],
    ledger: Ledger,
    *,
    deal: tuple[str, int] | None = None,
    login: int | None = None,
) -> Recorded:
    """Replay the fills exactly as `replay` does, keeping the settlements of one deal or of
    every deal of one login (by processing order)."""
    recorded = Recorded(ledger, ReplayResult())

    def keep(_: str, __: int, item: Settlement | Problem) -> None:
        if isinstance(item, Problem):
            return
        key = (item.fill.server, item.fill.deal)
        if key == deal or item.fill.login == login:
            recorded.by_deal.setdefault(key, []).append(item)

    recorded.result = replay_lines(lines, ledger, lambda _: None, on_line=keep)
    return recorded


def explain_deal(recorded: Recorded, server: str, deal: int) -> DealExplanation:
    return explain_settlements(
        server, deal, recorded.by_deal.get((server, deal), []), recorded.ledger.book
    )


def explain_settlements(
    server: str, deal: int, settlements: Sequence[Settlement], book: RuleBook
) -> DealExplanation:
    """Tell a deal's revisions, in the order processed: from a replay or a live journal."""
    return DealExplanation(
        server,
        deal,
        tuple(
            RevisionExplanation(n, s, tuple(_steps(s, book)))
            for n, s in enumerate(settlements, start=1)
        ),
    )


def journaled_settlement(
    fill: Fill,
    outcome: Outcome,
    reasons: tuple[Reason, ...],
    output: Output,
    bonus_lots: tuple[tuple[str, Decimal], ...],
) -> Settlement:
    """A settlement rebuilt from a deal journal (the live store): the fill, outcome, reasons,
    what it emitted and the bonus turnover it counted are all the step builders read; the
    wallet state after it is not kept per revision (explain --login reads the current one)."""
    standing = Standing(fill.revision, output.credits, Effects(bonus_lots=bonus_lots))
    return Settlement(
        fill, outcome, reasons, output, AccountState(fill.login), standing if bonus_lots else None
    )


def explain_login(recorded: Recorded, login: int) -> LoginExplanation:
    deals = tuple(
        explain_deal(recorded, server, deal)
        for (server, deal), settlements in recorded.by_deal.items()
        if settlements[0].fill.login == login
    )
    times = [r.settlement.fill.close_time for d in deals for r in d.revisions]
    return LoginExplanation(
        login,
        clients_of(recorded.ledger.book, login, times),
        recorded.ledger.rewards,
        recorded.ledger.account(login),
        deals,
    )


def clients_of(book: RuleBook, login: int, times: Iterable[datetime] = ()) -> tuple[str, ...]:
    """The login's client at each of these instants, then the latest (a login may change
    hands), without repeats."""
    clients: list[str] = []
    for at in [*times, _FAR_FUTURE]:
        attr = book.resolve(login, at)
        if attr is not None and attr.client.id not in clients:
            clients.append(attr.client.id)
    return tuple(clients)


# -- one revision, step by step ----------------------------------------------------------------


def _steps(s: Settlement, book: RuleBook) -> list[Step]:
    fill = s.fill
    if s.outcome == "duplicate":
        ids = ", ".join(c.credit_id for c in s.credits) or "none"
        return [
            Step(
                "outcome",
                "This exact revision was processed before: it changes nothing; a redelivery"
                f" only re-publishes the credits it emitted then ({ids}).",
            )
        ]
    if s.outcome == "stale":
        return [
            Step(
                "outcome",
                f"Its seq {fill.seq} is not above the deal's current seq: it is older than"
                " what was already applied (or the same seq with other content), so it"
                " changed nothing and emitted nothing.",
                {"seq": fill.seq},
            )
        ]
    steps = _reversal_steps(s.credits)
    if fill.event == "delete":
        steps.append(Step("outcome", "The deal was deleted on the platform: nothing is paid."))
        return steps
    if not fill.earns:
        steps.append(
            Step("outcome", "An opening (entry in) deal earns nothing: only closing deals do.")
        )
        return steps
    attr = book.resolve(fill.login, fill.close_time)
    if attr is None:
        steps.append(_nothing(s, f"login {fill.login} belonged to no client at the close time"))
        return steps
    rules, rule = _rules_step(fill, attr, book)
    steps.append(rules)
    if not attr.account.live:
        steps.append(_nothing(s, f"account {fill.login} is a demo account"))
        return steps
    costs = costs_of(fill, attr.lot_scale(fill.currency))
    inputs = cost_inputs(fill, costs)
    steps.append(_costs_step(fill, inputs, costs.cost_usd))
    steps.extend(_commission_steps(s, attr, rule))
    steps.append(_coverage_step(s, attr, costs.cost_usd))
    steps.append(_loyalty_step(s, attr))
    steps.append(_bonus_step(s))
    steps.append(_outcome_step(s))
    return steps


def _reversal_steps(credits: Sequence[Credit]) -> list[Step]:
    reversals = [c for c in credits if c.kind == "reversal"]
    if not reversals:
        return []
    why = {
        "update": "an update",
        "delete": "a delete",
        "resent": "a re-sent add",
        "late_change": "a re-settlement (a back-office change effective before it came late)",
    }
    reason = str(reversals[0].basis.get("reason", ""))
    lines = [
        f"{c.amount:.2f} {c.currency} to {c.beneficiary_type} {c.beneficiary_id} reverses its"
        f" {c.basis.get('reversed_kind')} credit {c.reverses} (credit {c.credit_id})"
        for c in reversals
    ]
    returned = any(c.basis.get("reversed_kind") == "jm_coverage" for c in reversals)
    text = f"This revision is {why.get(reason, reason)}: first, what stood is taken back. " + (
        "; ".join(lines) + "."
    )
    if returned:
        text += " The JM USD it covered goes back to the login's allocations."
    return [
        Step(
            "reversal",
            text,
            {
                "reversed": [
                    {"credit_id": c.reverses, "amount": f"{-c.amount:.2f}"} for c in reversals
                ]
            },
        )
    ]


def _rules_step(fill: Fill, attr: Attribution, book: RuleBook) -> tuple[Step, Rule | None]:
    lot_scale = attr.lot_scale(fill.currency)
    parts = [
        f"Rules in force at {fill.close_time_text}: login {fill.login} is a"
        f" {attr.account.type} {'live' if attr.account.live else 'demo'} account"
        f" (lot_scale {fmt(lot_scale)}) of client {attr.client.id}"
    ]
    numbers: dict[str, Any] = {
        "account_type": attr.account.type,
        "lot_scale": fmt(lot_scale),
        "client": attr.client.id,
    }
    rule = None
    if attr.ib is None or attr.plan is None:
        parts[0] += ", a direct client (no IB): no commission, rebate or override is due."
    else:
        ib, plan = attr.ib, attr.plan
        parts[0] += f", referred by IB {ib.id} ({ib.status}) on plan {plan.id}."
        numbers.update({"ib": ib.id, "ib_status": ib.status, "plan": plan.id})
        rule = book.match_rule(plan, attr.symbols, attr.account.type, fill.symbol)
        parts.append(_rule_words(fill, attr, rule, numbers))
    if attr.uplines:
        parts.append(
            "Uplines: "
            + ", ".join(f"L{u.level} {u.ib.id} (plan {u.plan.id})" for u in attr.uplines)
            + "."
        )
    loyalty = attr.loyalty
    parts.append(
        f"Loyalty: coverage {loyalty.coverage_text}% of the cost, accrual {loyalty.accrual_text}%."
    )
    return Step("rules", " ".join(parts), numbers), rule


def _rule_words(fill: Fill, attr: Attribution, rule: Rule | None, numbers: dict[str, Any]) -> str:
    """The matched rule and the client's rebate rate under it (adds them to `numbers`)."""
    assert attr.ib is not None and attr.plan is not None
    if rule is None:
        return (
            f"No rule of plan {attr.plan.id} covers {fill.symbol} on a {attr.account.type} account."
        )
    rule_id = f" (id {rule.id})" if rule.id is not None else ""
    cap = (
        f", capped at {fmt(rule.max_usd_per_lot)} USD per standard lot"
        if rule.max_usd_per_lot is not None
        else ""
    )
    rebate = rebate_rate(attr.client, attr.ib, rule)
    unit = " USD per standard lot" if rebate.per_lot else "% of the L1 gross"
    numbers.update(
        {
            "rule": rule.label,
            "rule_id": rule.id,
            "method": rule.method,
            "rate": rule.rate_text,
            "rebate_rate": fmt(rebate.rate),
            "rebate_source": rebate.source,
        }
    )
    return (
        f"Matched rule {rule.label}{rule_id}: {_rate_words(rule)}{cap}. Client rebate rate"
        f" {fmt(rebate.rate)}{unit}: {rebate.source}"
        f" ({_REBATE_SOURCES.get(rebate.source, rebate.source)})."
    )


def _rate_words(rule: Rule) -> str:
    if rule.method == "per_lot_usd":
        return f"{rule.rate_text} USD per standard lot"
    if rule.method == "spread_pct":
        return f"{rule.rate_text}% of the spread cost"
    return f"{rule.rate_text}% of the commission paid"


def _costs_step(fill: Fill, inputs: Mapping[str, Any], cost_usd: Decimal) -> Step:
    cur = inputs["currency"]
    size = (
        f"Size: {inputs['lots']} lots x lot_scale {inputs['lot_scale']} ="
        f" {inputs['std_lots']} standard lots."
    )
    if inputs["spread_points"] is None or inputs["point_value"] is None:
        spread = "No spread information: spread cost 0."
    else:
        spread = (
            f"Spread cost: {inputs['spread_points']} points x point value"
            f" {inputs['point_value']} x {inputs['lots']} lots = {inputs['spread_cost']} {cur}."
        )
    commission = (
        f"Commission {inputs['commission']} {cur}: {inputs['commission_paid']} {cur} paid"
        + (" (a positive commission is a refund, not a cost)." if fill.commission > 0 else ".")
    )
    total = (
        f"At usd_rate {inputs['usd_rate']} the client paid"
        f" ({inputs['spread_cost']} + {inputs['commission_paid']}) x {inputs['usd_rate']} ="
        f" {fmt(cost_usd)} USD to trade."
    )
    return Step(
        "costs", " ".join([size, spread, commission, total]), {**inputs, "cost_usd": fmt(cost_usd)}
    )


def _check(fill: Fill, attr: Attribution, name: str) -> tuple[str, dict[str, Any]] | None:
    """The words and numbers of one anti-abuse check (None: the plan does not make it)."""
    ib, plan = attr.ib, attr.plan
    assert ib is not None and plan is not None
    if name == "ib_inactive":
        return f"IB {ib.id} is {ib.status}", {"ib_status": ib.status}
    if name == "min_hold":
        if not plan.min_hold_seconds:
            return None
        return (
            f"held {fmt(Decimal(str(fill.hold_seconds)))} s, plan minimum"
            f" {plan.min_hold_seconds} s",
            {"held_seconds": fill.hold_seconds, "min_hold_seconds": plan.min_hold_seconds},
        )
    if name == "min_points":
        if not plan.min_points:
            return None
        return (
            f"moved {fmt(fill.points_moved)} points, plan minimum {plan.min_points}",
            {"points_moved": fmt(fill.points_moved), "min_points": plan.min_points},
        )
    if not plan.exclude_self_trades:
        return None
    own = ib.client or "none"
    return (
        f"account's client {attr.account.client}, IB {ib.id}'s own client {own}",
        {"account_client": attr.account.client, "ib_own_client": ib.client},
    )


def _commission_steps(s: Settlement, attr: Attribution, rule: Rule | None) -> list[Step]:
    fill = s.fill
    if attr.ib is None or attr.plan is None:
        return []
    if rule is None:
        return [
            Step(
                "eligibility",
                f"No commission: {REASON_WORDS['no_rule']} (reason no_rule); no rebate and"
                " no upline override either.",
            )
        ]
    failed = next((r for r in s.reasons if r in WITHHOLD_CHECKS), None)
    verdict = "passed"
    checks: list[str] = []
    numbers: dict[str, Any] = {}
    for name in WITHHOLD_CHECKS:
        described = _check(fill, attr, name)
        if described is None:
            checks.append(f"{name}: not required by plan {attr.plan.id}")
            numbers[name] = {"result": "not_required"}
            continue
        words, values = described
        if name == failed:
            verdict_here = "FAILED"
            verdict = "not checked (already withheld)"
        else:
            verdict_here = verdict
        checks.append(f"{name}: {words}: {verdict_here}")
        numbers[name] = {**values, "result": verdict_here.lower()}
    text = "Checks: " + "; ".join(checks) + "."
    if failed is not None:
        text += (
            f" The IB commission is withheld ({failed}: {REASON_WORDS[failed]}), and with it"
            " the client rebate and every upline override."
        )
        return [Step("eligibility", text, numbers)]
    steps = [Step("eligibility", text, numbers)]
    l1 = _credit(s, "ib_commission") or _credit(s, "client_rebate")
    if l1 is None:
        steps.append(Step("commission", "The L1 gross comes to 0.00: nothing to pay or split."))
        return steps
    steps.extend(_l1_steps(s, attr, l1))
    return steps


def _l1_steps(s: Settlement, attr: Attribution, l1: Credit) -> list[Step]:
    assert attr.ib is not None
    gross = str(l1.basis["gross"])
    ib_credit = _credit(s, "ib_commission")
    rebate_credit = _credit(s, "client_rebate")
    if ib_credit is not None:
        b = ib_credit.basis
        text = (
            f"L1 commission for IB {attr.ib.id}: {b['formula']} USD (credit {ib_credit.credit_id})."
        )
        rate, source, rebate = b["rebate_rate"], b["rebate_source"], b["rebate"]
        method = b["rebate_method"]
    else:
        b = l1.basis
        text = (
            f"L1 gross for IB {attr.ib.id}: {gross} USD, all of it to the client as rebate:"
            " IB net 0.00 (not emitted)."
        )
        rate, source, rebate = b["rate"], b["source"], f"{l1.amount:.2f}"
        method = b["method"]
    steps = [Step("commission", text, {"gross": gross, "rebate": rebate, "net": _net(s)})]
    unit = "%" if method == "rebate_pct" else " USD per standard lot"
    if rebate_credit is not None:
        text = (
            f"Client rebate for {attr.client.id}: {rebate_credit.basis['formula']} USD"
            f" (rate {rate}{unit}, source {source}: {_REBATE_SOURCES.get(source, source)};"
            f" credit {rebate_credit.credit_id})."
        )
    else:
        text = (
            f"No client rebate for {attr.client.id}: rate {rate}{unit}, source {source}"
            f" ({_REBATE_SOURCES.get(source, source)}): 0.00."
        )
    steps.append(
        Step("rebate", text, {"rebate": rebate, "rebate_rate": rate, "rebate_source": source})
    )
    steps.extend(_override_steps(s, attr, Decimal(gross)))
    return steps


def _net(s: Settlement) -> str:
    credit = _credit(s, "ib_commission")
    return f"{credit.amount:.2f}" if credit is not None else "0.00"


def _override_steps(s: Settlement, attr: Attribution, gross: Decimal) -> list[Step]:
    paid = {c.beneficiary_id: c for c in s.credits if c.kind == "ib_override"}
    # Which uplines were withheld and why: the same function the settlement called.
    _, withheld = upline_overrides(attr.uplines, gross, attr.account.client)
    why = {u.ib.id: reason for u, reason in withheld}
    steps = []
    for upline in attr.uplines:
        ib = upline.ib.id
        numbers: dict[str, Any] = {"level": upline.level, "ib": ib, "plan": upline.plan.id}
        if ib in paid:
            c = paid[ib]
            text = (
                f"Override L{upline.level} to IB {ib}: {c.basis['formula']} USD"
                f" (credit {c.credit_id})."
            )
            numbers.update({"rate": c.basis["rate"], "amount": f"{c.amount:.2f}"})
        elif ib in why:
            reason = why[ib]
            detail = (
                f"IB {ib} is {upline.ib.status}"
                if reason == "ib_inactive"
                else f"client {attr.account.client} is IB {ib}'s own client"
            )
            text = f"Override L{upline.level} to IB {ib} withheld ({reason}): {detail}."
            numbers["withheld"] = reason
        else:
            pcts = upline.plan.upline_override_pct
            index = upline.level - 2
            pct = fmt(pcts[index]) if index < len(pcts) else "0"
            text = (
                f"Override L{upline.level} to IB {ib}: none (plan {upline.plan.id} pays"
                f" {pct}% at level {upline.level}, or it rounds to 0.00)."
            )
            numbers["rate"] = pct
        steps.append(Step("override", text, numbers))
    return steps


def _coverage_step(s: Settlement, attr: Attribution, cost_usd: Decimal) -> Step:
    c = _credit(s, "jm_coverage")
    if c is not None:
        b = c.basis
        return Step(
            "coverage",
            f"JM USD coverage for login {s.fill.login}: {b['formula']} (credit {c.credit_id}).",
            {
                "covered": f"{c.amount:.2f}",
                "jm_balance_before": b["jm_balance_before"],
                "jm_balance_after": b["jm_balance_after"],
            },
        )
    loyalty = attr.loyalty
    if not loyalty.coverage_pct:
        why = "the loyalty programme covers 0% of the cost"
    elif not cost_usd:
        why = "the fill cost nothing"
    else:
        why = (
            f"no JM USD was allocated to login {s.fill.login} before the position opened at"
            f" {_iso(s.fill.open_time)} (or it is used up)"
        )
    return Step("coverage", f"No JM USD coverage: {why}.", {"covered": "0.00"})


def _loyalty_step(s: Settlement, attr: Attribution) -> Step:
    c = _credit(s, "loyalty_accrual")
    if c is not None:
        return Step(
            "loyalty",
            f"Loyalty accrual to client {c.beneficiary_id}'s reward wallet: {c.basis['formula']}"
            f" JM USD (credit {c.credit_id}).",
            {"accrued": f"{c.amount:.2f}"},
        )
    if attr.loyalty.exclude_ib_referred and attr.client.ib is not None:
        why = f"the programme excludes IB-referred clients (client {attr.client.id} has IB"
        why += f" {attr.client.ib})"
    else:
        why = "the cost left after coverage earns 0.00 at the accrual rate"
    return Step("loyalty", f"No loyalty accrual: {why}.", {"accrued": "0.00"})


def _bonus_step(s: Settlement) -> Step:
    added = s.standing.effects.bonus_lots if s.standing is not None else ()
    unlocked = [e for e in s.output.events if e.event == "bonus_unlocked"]
    if not added:
        return Step("bonus", f"No open deposit bonus on login {s.fill.login}: no turnover counted.")
    text = "Bonus turnover: " + "; ".join(
        f"{fmt(lots)} standard lots added to bonus {bonus_id}" for bonus_id, lots in added
    )
    for e in unlocked:
        p = e.payload
        text += (
            f"; bonus {p['bonus_id']} unlocked at {p['turnover_lots']} of"
            f" {p['required_lots']} standard lots ({p['amount_usd']} USD)"
        )
    return Step(
        "bonus",
        text + ".",
        {
            "added": {bonus_id: fmt(lots) for bonus_id, lots in added},
            "unlocked": [e.payload["bonus_id"] for e in unlocked],
        },
    )


def _outcome_step(s: Settlement) -> Step:
    fresh = [c for c in s.credits if c.kind != "reversal"]
    reasons = "; ".join(f"{r}: {REASON_WORDS[r]}" for r in s.reasons)
    if not fresh:
        text = "This revision earned nothing new" + (f" ({reasons})." if reasons else ".")
    else:
        listed = ", ".join(
            f"{c.kind} {c.amount:.2f} {c.currency} to {c.beneficiary_type} {c.beneficiary_id}"
            f" ({c.credit_id})"
            for c in fresh
        )
        text = f"Credits: {listed}."
        if reasons:
            text += f" Earned less than its plan: {reasons}."
    return Step("outcome", text, {"outcome": s.outcome, "reasons": list(s.reasons)})


def _nothing(s: Settlement, why: str) -> Step:
    reasons: tuple[Reason, ...] = s.reasons
    return Step(
        "outcome",
        f"Nothing earned: {why} (reason {', '.join(reasons) or 'none'}).",
        {"outcome": s.outcome, "reasons": list(reasons)},
    )


def _credit(s: Settlement, kind: str) -> Credit | None:
    return next((c for c in s.credits if c.kind == kind), None)


def _totals(settlements: Iterable[Settlement]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for s in settlements:
        if s.outcome in ("duplicate", "stale"):
            continue
        for c in s.credits:
            out[c.currency] = out.get(c.currency, ZERO) + c.amount
    return out


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

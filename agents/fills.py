"""The fill hot path, independent of the consumer driving it: decode, look up, settle, apply.

`FillProcessor.process(records)` turns a batch of Kafka records into the messages to publish
(credits, wallet events, dead letters). The Faust agent (agents/app.py) and the plain aiokafka
baseline of the benchmark call the same code, so the comparison measures only the consumer.

Per batch, in the steady state, Redis sees one round trip: the Lua apply (agents/storage/apply.lua).
Wallet state is cached per login (this worker owns the login's partition) and checked by
compare-and-set in the script; the rules are cached and checked by version in the same call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from agents.messages import BatchResult, Outgoing, Record, Topics, dead_letter
from agents.metrics import Metrics
from agents.storage.codec import (
    credit_json,
    decode_output,
    encode_journal_entry,
    encode_output,
    encode_standing,
)
from agents.storage.store import ApplyItem, Park, RedisStore, StaleRules
from engine.errors import BadFill, ConfigError
from engine.fill import Fill, decode_fill
from engine.settle import Outcome, Reason, Settlement, settle
from engine.settlement import SlotMemo, payout_increments, reversed_credits
from engine.state import AccountState, DealJournal, Output, Standing

__all__ = ["FillProcessor"]

_T = TypeVar("_T")
_MAX_ROUNDS = 8  # compare-and-set retries for one batch; each round settles at least one item


@dataclass
class _Pending:
    """A decoded fill waiting for its state change to be applied."""

    index: int
    record: Record
    fill: Fill
    settlement: Settlement | None = None
    output: Output | None = None  # what was published for it (stored output on re-delivery)
    conflicted: bool = False  # Redis disagreed with our view once: reload its deal too
    encoded: dict[str, bytes] = field(default_factory=dict)  # credit_id -> credit.v1 bytes


class FillProcessor:
    def __init__(
        self,
        store: RedisStore,
        metrics: Metrics,
        topics: Topics,
        clock: Callable[[], float] = time.time,
        *,
        correction_window_hours: float | None = 168,
    ) -> None:
        self.store = store
        self.clock = clock  # when a fill is parked (epoch seconds): park_hours count from it
        # Settled deals are indexed for late re-settlement (agents/late.py) back to this far
        # before the clock; None: not indexed (nothing to re-settle them from).
        self.correction_window_s = (
            None if correction_window_hours is None else correction_window_hours * 3600
        )
        self.metrics = metrics
        self.topics = topics
        self._accounts: dict[int, tuple[int, AccountState]] = {}
        self._metric_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _credit_metrics(self, kind: str, currency: str) -> tuple[Any, Any]:
        """The labelled counters of a credit kind (label lookups cost more than the increments)."""
        try:
            return self._metric_children[(kind, currency)]
        except KeyError:
            children = (
                self.metrics.credits.labels(kind),
                self.metrics.credit_amount.labels(kind, currency),
            )
            self._metric_children[(kind, currency)] = children
            return children

    def forget_accounts(self) -> None:
        """Drop cached wallet state (on rebalance: another worker may own the logins now)."""
        self._accounts.clear()

    async def process(self, records: Sequence[Record]) -> BatchResult:
        """Settle a batch; raises redis errors (the caller pauses and retries the same batch)."""
        result = BatchResult()
        pending: list[_Pending] = []
        for i, record in enumerate(records):
            try:
                fill = decode_fill(record.value or b"")
            except BadFill as exc:
                result.dead_letters.append(self._dead_letter(record, exc.reason, str(exc)))
                continue
            pending.append(_Pending(i, record, fill))
            if record.timestamp_ms is not None:
                result.timestamps_ms.append(record.timestamp_ms)
        if self.store.rules_version < 0:
            await self._timed("rules", self.store.refresh_rules())
        todo = pending
        for _ in range(_MAX_ROUNDS):
            if not todo:
                break
            todo = await self._round(todo, result)
        else:
            raise RuntimeError(f"{len(todo)} fills still conflict after {_MAX_ROUNDS} rounds")
        for p in pending:
            if p.settlement is None or p.output is None:
                continue  # dead-lettered during settlement
            for credit in p.output.credits:
                value = p.encoded.get(credit.credit_id) or credit_json(credit)
                result.credits.append(
                    Outgoing(self.topics.credits, credit.beneficiary_id.encode(), value)
                )
                count, amount = self._credit_metrics(credit.kind, credit.currency)
                count.inc()
                amount.inc(abs(float(credit.amount)))
            for event in p.output.events:
                result.wallet_events.append(
                    Outgoing(
                        self.topics.wallet_events,
                        str(p.fill.login).encode(),
                        orjson.dumps(event.to_dict()),
                    )
                )
            self.metrics.fills.labels(p.settlement.outcome).inc()
            for reason in p.settlement.reasons:
                self.metrics.fill_reasons.labels(reason).inc()
        for o in result.dead_letters:
            self.metrics.dead_letters.labels(o.headers[0][1].decode()).inc()
            self.metrics.fills.labels("dead_lettered").inc()
        self.metrics.batch_size.observe(len(records))
        return result

    async def _round(self, todo: list[_Pending], result: BatchResult) -> list[_Pending]:
        """Settle `todo` against cached state, apply, and return the items to redo.

        Dead letters of a round are kept only when the round stands: a round redone under
        newer rules may credit a fill the older rules could not attribute.
        """
        need_logins = sorted({p.fill.login for p in todo} - self._accounts.keys())
        # Adds are optimistic (no standing expected; the script checks). Updates, deletes and
        # anything Redis contradicted before load what stands for their deal.
        need_deals = sorted(
            {(p.fill.server, p.fill.deal) for p in todo if p.fill.event != "add" or p.conflicted}
        )
        journals: dict[tuple[str, int], DealJournal] = {}
        if need_logins or need_deals:
            loaded, journals = await self._timed(
                "load", self.store.load_state(need_logins, need_deals)
            )
            self._accounts.update(loaded)
        dead: list[Outgoing] = []
        try:
            items = self._settle_all(todo, journals, dead)
            if not items:
                # Nothing for the script to check the rules version against: ask directly,
                # so a fill for an account added a moment ago is not settled on old rules.
                if await self._timed("rules", self.store.refresh_rules()):
                    return todo
                result.dead_letters.extend(dead)
                return []
            replies = await self._timed("apply", self.store.apply([i for i, _ in items]))
        except StaleRules:
            await self._timed("rules", self.store.refresh_rules())
            return todo
        result.dead_letters.extend(dead)
        redo: list[_Pending] = []
        broken: set[int] = set()
        for (item, p), (status, payload) in zip(items, replies, strict=True):
            if status == "ok" and item.login not in broken:
                self._accounts[item.login] = (int(payload), item.account)
            elif status == "parked":
                p.output, p.encoded = Output(), {}  # its account untouched: the cache holds
                if payload == "again":
                    p.settlement = _unchanged(p.settlement, "duplicate", p.output)
            elif status in ("dup", "stale"):
                # dup: publish exactly what was emitted then (same ids as our recomputation,
                # not necessarily the same amounts, or the same engine version); stale: nothing.
                if status == "dup":
                    p.output, p.encoded = decode_output(payload)
                else:
                    p.output, p.encoded = Output(), {}
                outcome: Outcome = "duplicate" if status == "dup" else "stale"
                p.settlement = _unchanged(p.settlement, outcome, p.output)
                broken.add(item.login)
            else:
                p.conflicted = True
                redo.append(p)
                broken.add(item.login)
        for login in broken:  # our cached view of these accounts is no longer Redis's
            self._accounts.pop(login, None)
        return redo

    def _settle_all(
        self,
        todo: list[_Pending],
        loaded: dict[tuple[str, int], DealJournal],
        dead: list[Outgoing],
    ) -> list[tuple[ApplyItem, _Pending]]:
        items: list[tuple[ApplyItem, _Pending]] = []
        # Local view for this round: fills of one account / deal in one batch chain on
        # each other's results, exactly as they will be applied in order by the script.
        accounts = dict(self._accounts)
        deals = dict(loaded)
        slots: SlotMemo = {}  # this round's book: a rules change redoes the round
        window = self.correction_window_s
        settled_floor = None if window is None else int(self.clock() - window)
        for p in todo:
            fill = p.fill
            deal_key = (fill.server, fill.deal)
            journal = deals.get(deal_key) or DealJournal()
            standing = journal.standing
            version, account = accounts.get(fill.login, (0, AccountState(fill.login)))
            try:
                s = settle(fill, self.store.book, account, journal)
            except ConfigError as exc:
                dead.append(self._dead_letter(p.record, exc.reason, str(exc)))
                p.settlement = None
                continue
            p.settlement, p.output = s, s.output
            p.encoded = {c.credit_id: credit_json(c) for c in s.credits}
            payouts = payout_increments(
                s.credits, reversed_credits(s.credits, standing), self.store.book, slots
            )
            item = ApplyItem(
                login=fill.login,
                expected_version=version,
                account=s.account,
                server=fill.server,
                deal=fill.deal,
                revision=fill.revision,
                expected_standing=standing.revision if standing else "",
                standing=s.standing,
                seq=fill.seq,
                standing_json=encode_standing(s.standing, p.encoded) if s.standing else "",
                output_json=encode_output(s.output, p.encoded),
                rewards=s.reward_deltas,
                settlements=payouts.settlements,
                lots=payouts.lots,
                journal_entry=encode_journal_entry(
                    p.record.value or b"",
                    fill.revision,
                    s.outcome,
                    s.reasons,
                    s.standing.effects.bonus_lots if s.standing else (),
                ),
                close_epoch=int(fill.close_time.timestamp()),
                park=self._park(p, s, standing),
                settled_floor=settled_floor,
            )
            items.append((item, p))
            if item.park is None:
                accounts[fill.login] = (version + 1, s.account)
            # The local view keeps only what stands: neither processed revisions nor seq. Only
            # the script holds every processed revision, so it alone tells a duplicate (which
            # publishes its stored output) from a stale seq, also for a revision repeated in
            # this batch: its first copy may turn out a duplicate or stale itself.
            deals[deal_key] = DealJournal({}, s.standing)
        return items

    def _park(self, p: _Pending, s: Settlement, standing: Standing | None) -> Park | None:
        """Park a fill whose login is not attributed yet (SPEC 4.2 r2): settled when its account
        arrives. An update or a delete of such a login's deal waits too (even one that earns
        nothing), so that it follows the parked add it revises. One that takes back what
        stands for its deal is settled now (the deal's login was attributed once), as is any
        fill under the rules' own reasons (demo, ...)."""
        if s.credits or standing is not None:
            return None
        revises = p.fill.event != "add" and self._unattributed(p.fill)
        if s.reasons != ("unattributed",) and not revises:
            return None
        close_s = p.fill.close_time.timestamp()
        return Park((p.record.value or b"").decode(), close_s, self.clock())

    def _unattributed(self, fill: Fill) -> bool:
        try:
            return self.store.book.resolve(fill.login, fill.close_time) is None
        except ConfigError:
            return False  # settled now: a configuration error is dead-lettered with its reason

    def _dead_letter(self, record: Record, reason: str, message: str) -> Outgoing:
        return dead_letter(record, self.topics.dead_letters, reason, message)

    async def _timed(self, op: str, awaitable: Awaitable[_T]) -> _T:
        start = time.perf_counter()
        try:
            value = await awaitable
        except Exception:
            self.metrics.redis_up.set(0)
            raise
        self.metrics.redis_seconds.labels(op).observe(time.perf_counter() - start)
        self.metrics.redis_up.set(1)
        return value


def _unchanged(s: Settlement | None, outcome: Outcome, output: Output) -> Settlement | None:
    """What the script found: a duplicate (output: what it emitted then) or a stale seq."""
    if s is None:
        return None
    reasons: tuple[Reason, ...] = ("stale",) if outcome == "stale" else ("duplicate",)
    return Settlement(s.fill, outcome, reasons, output, s.account, s.standing)

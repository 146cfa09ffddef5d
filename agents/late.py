"""Late back-office changes re-settle the fills they touch (SPEC 3 r2, engine/late.py).

A change whose `at` lies before fills already settled comes with a re-settlement job, written
in the same script call as the change (agents/storage/crm.lua for events, one transaction for
`rebate-engine admin`). `LateResettlement.run(publish)`, run by one worker (the owner of
crm-events.v1's single partition, next to the park release), takes the jobs in order; for
each login of a job it loads the deals the login settled at or after the change's `at` (a
bounded index, keys.LOGIN_SETTLED), re-settles them in memory (engine.late.resettle_login:
undo all, redo all in close-time order) and applies the result in one script call
(agents/storage/resettle.lua) that also records what it emitted. Once every login of the job
is done it publishes the credits and wallet events and only then removes the job. Killed at
any point, it does the job again: a login already re-settled publishes what was recorded (the
same credit ids), the others are computed again.

Another worker may settle new fills of the same login meanwhile: the script's compare-and-set
on the account version, the deals' standing and the rules version sends it back to reload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson

from agents.messages import Outgoing, Topics
from agents.metrics import Metrics
from agents.storage.codec import (
    credit_json,
    decode_output,
    encode_journal_entry,
    encode_output,
    encode_standing,
)
from agents.storage.store import RedisStore, ResettleDeal, ResettleJob, StoredDeal
from engine.errors import ConfigError
from engine.late import LoginResettlement, Resettled, SettledDeal, resettle_login
from engine.settlement import SlotMemo, payout_increments
from engine.state import Output

__all__ = ["LateResettlement"]

Publish = Callable[[Sequence[Outgoing]], Awaitable[None]]
log = logging.getLogger(__name__)
_MAX_ROUNDS = 8  # compare-and-set retries for one login: new fills settled under our feet


class LateResettlement:
    def __init__(
        self, store: RedisStore, metrics: Metrics, topics: Topics, *, jobs_per_run: int = 100
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.topics = topics
        self.jobs_per_run = jobs_per_run

    async def update_metrics(self) -> None:
        self.metrics.resettle_jobs_pending.set(await self.store.pending_resettle_jobs())

    async def run(self, publish: Publish) -> int:
        """Do the pending jobs in order (at most `jobs_per_run`); returns how many were done."""
        jobs = await self.store.resettle_jobs(self.jobs_per_run)
        for job in jobs:
            await publish(await self.resettle(job))
            await self.store.finish_resettle_job(job)  # only once its output is acknowledged
        await self.update_metrics()
        return len(jobs)

    async def resettle(self, job: ResettleJob) -> list[Outgoing]:
        """Re-settle every login of `job` (applied in Redis); what to publish for it."""
        out: list[Outgoing] = []
        for login in job.logins:
            for raw in await self._login(job, login):
                output, encoded = decode_output(raw)
                out += self._outgoing(login, output, encoded)
        return out

    async def _login(self, job: ResettleJob, login: int) -> list[str]:
        """The outputs (JSON) of the login's re-settlement for `job`: applied now, or recorded
        when it was applied by an earlier run of the job."""
        recorded = await self.store.resettled(job, login)
        if recorded is not None:
            return recorded  # applied by an earlier run of the job, maybe never published
        since = int(job.at.timestamp())  # the index holds whole seconds: the fills are filtered
        for _ in range(_MAX_ROUNDS):
            await self.store.refresh_rules()
            version, account, stored = await self.store.settled_deals(login, since)
            by_deal = {(d.server, d.deal): d for d in stored}
            deals = [_settled(d) for d in stored if d.fill.close_time >= job.at]
            try:
                result = resettle_login(deals, self.store.book, account, job.id)
            except ConfigError as exc:
                log.warning("late change %s: login %s not re-settled: %s", job.id, login, exc)
                return []
            if result is None:
                return []  # every deal stands as the change would have it: nothing to emit
            outputs, writes = self._writes(result, by_deal)
            status, recorded = await self.store.apply_resettle(
                job, login, version, result.account, outputs, writes
            )
            if status == "ok":
                self.metrics.resettled_deals.inc(len(result.deals))
                return outputs
            if status == "dup":
                return recorded
            # conflict / stale_rules: what we computed from has moved; load it again
        raise RuntimeError(f"late change {job.id}: login {login} kept moving for {_MAX_ROUNDS}")

    def _writes(
        self, result: LoginResettlement, by_deal: dict[tuple[str, int], StoredDeal]
    ) -> tuple[list[str], list[ResettleDeal]]:
        outputs: list[str] = []
        writes: list[ResettleDeal] = []
        slots: SlotMemo = {}
        for r in result.deals:
            fill = r.deal.fill
            encoded = {c.credit_id: credit_json(c) for c in r.output.credits}
            output_json = encode_output(r.output, encoded)
            payouts = payout_increments(
                r.output.credits, r.reversed_credits, self.store.book, slots
            )
            outputs.append(output_json)
            writes.append(
                ResettleDeal(
                    fill.server,
                    fill.deal,
                    expected_standing=r.deal.standing.revision if r.deal.standing else "",
                    revision=r.revision,
                    output_json=output_json,
                    standing_json=encode_standing(r.standing, encoded) if r.standing else "",
                    journal_entry=_journal_entry(r, by_deal[(fill.server, fill.deal)]),
                    rewards=r.reward_deltas,
                    settlements=payouts.settlements,
                    lots=payouts.lots,
                )
            )
        return outputs, writes

    def _outgoing(self, login: int, output: Output, encoded: dict[str, bytes]) -> list[Outgoing]:
        out = []
        for credit in output.credits:
            value = encoded.get(credit.credit_id) or credit_json(credit)
            out.append(Outgoing(self.topics.credits, credit.beneficiary_id.encode(), value))
            self.metrics.credits.labels(credit.kind).inc()
            self.metrics.credit_amount.labels(credit.kind, credit.currency).inc(
                abs(float(credit.amount))
            )
        for event in output.events:
            value = orjson.dumps(event.to_dict())
            out.append(Outgoing(self.topics.wallet_events, str(login).encode(), value))
        return out


def _settled(d: StoredDeal) -> SettledDeal:
    return SettledDeal(d.fill, d.revision, d.standing)


def _journal_entry(r: Resettled, stored: StoredDeal) -> str:
    bonus_lots = r.standing.effects.bonus_lots if r.standing else ()
    return encode_journal_entry(stored.fill_json, r.revision, r.outcome, r.reasons, bonus_lots)

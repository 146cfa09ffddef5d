"""The crm-events.v1 consumer: back-office events into the rules log (SPEC 3 r2).

`CrmEventHandler.handle(records)` takes a batch in the topic's order (one partition: one total
order) and returns the dead letters to publish. Each event is decoded and checked by
engine/crm.py against the rules in force at its `at` (the same change the admin command of
that name makes), then appended to the rules log with its id in one script
(agents/storage/crm.lua): a redelivered event changes nothing. Workers refold their rules when
the version moves, so the next fills see the change; the same script records the change's
re-settlement job (the logins it touches), which agents/late.py runs for fills already settled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from agents.messages import Outgoing, Record, dead_letter
from agents.metrics import Metrics
from agents.storage.store import RedisStore, ResettleJob
from engine.crm import (
    EVENT_TYPES,
    CrmEvent,
    CrmEventError,
    check_event,
    check_folds,
    check_window,
    decode_event,
)
from engine.late import touched_logins

__all__ = ["CrmEventHandler"]

_MAX_ROUNDS = 8  # rules appended by someone else between our check and our write


class CrmEventHandler:
    def __init__(
        self,
        store: RedisStore,
        metrics: Metrics,
        dead_letter_topic: str,
        correction_window_hours: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.dead_letter_topic = dead_letter_topic
        self.correction_window_hours = correction_window_hours
        self.clock = clock

    async def handle(self, records: Sequence[Record]) -> list[Outgoing]:
        """Apply a batch in order; raises redis errors (the caller retries the same batch)."""
        dead: list[Outgoing] = []
        for record in records:
            event_type = "unknown"
            try:
                event = decode_event(record.value or b"")
                event_type = event.type
                outcome = await self._apply(event)
            except CrmEventError as exc:
                dead.append(dead_letter(record, self.dead_letter_topic, exc.reason, str(exc)))
                self.metrics.crm_dead_letters.labels(exc.reason).inc()
                outcome = "dead_lettered"
            self.metrics.crm_events.labels(
                event_type if event_type in EVENT_TYPES else "unknown", outcome
            ).inc()
        return dead

    async def _apply(self, event: CrmEvent) -> str:
        # Seen before: its own change is in the book now, so checking it again would refuse it
        # (`already_exists`) and dead-letter an event that was applied.
        if await self.store.event_seen(event.event_id):
            return "duplicate"
        check_window(event, self.clock(), self.correction_window_hours)
        for _ in range(_MAX_ROUNDS):
            await self.store.refresh_rules()
            checked = check_event(event, self.store.book)
            check_folds(checked, self.store.book)
            job = ResettleJob(
                event.event_id,
                event.at,
                tuple(sorted(touched_logins(self.store.book, checked.change))),
            )
            status = await self.store.append_event_change(
                event.event_id,
                checked.change,
                job,
                now_s=self.clock().timestamp(),
                window_s=self.correction_window_hours * 3600,
            )
            if status == "stale_rules":
                continue
            if status == "dup":
                return "duplicate"
            if checked.direct_client:
                self.metrics.direct_clients.labels(checked.direct_client).inc()
            return "applied"
        raise RuntimeError(f"event {event.event_id}: rules kept moving for {_MAX_ROUNDS} rounds")

"""Parked fills (SPEC 4.2 r2): settled when their account arrives, dead-lettered after park_hours.

The fill processor parks a fill whose login is not attributed yet (agents/storage/apply.lua),
atomically with its journal entry. `ParkRelease.release(publish, now_s)`, run by one worker
(the owner of crm-events.v1's single partition), then:
- dead-letters to fills.v1.dlq (reason `unattributed`) the fills parked longer than
  `park_hours`, as received, so that they can be re-published once their account is added;
- when the rules have moved since its last look, settles the parked fills of logins now
  attributed at their close_time, in close-time order, through the fill processor (so their
  credits come out as the offline replay's, which knows the account from its `at`).
A fill leaves the park only once what it led to is acknowledged by the broker: a worker killed
in between publishes it again (the same credit ids: the journal returns what it emitted).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from agents.fills import FillProcessor
from agents.messages import Outgoing, Record, dead_letter
from agents.metrics import Metrics
from agents.storage.store import ParkedFill, RedisStore
from engine.errors import BadFill, ConfigError
from engine.fill import Fill, decode_fill

__all__ = ["ParkRelease"]

Publish = Callable[[Sequence[Outgoing]], Awaitable[None]]
_NO_DEAL = ("", -1, "")  # a fill that no longer decodes has no journal entry to clear


class ParkRelease:
    def __init__(
        self,
        store: RedisStore,
        processor: FillProcessor,
        metrics: Metrics,
        *,
        fills_topic: str,
        dead_letter_topic: str,
        park_hours: float,
        batch_max: int,
    ) -> None:
        self.store = store
        self.processor = processor
        self.metrics = metrics
        self.fills_topic = fills_topic
        self.dead_letter_topic = dead_letter_topic
        self.park_hours = park_hours
        self.batch_max = batch_max
        self._looked_at_version = -1  # the rules version of the last look for arrived accounts

    async def update_metrics(self, now_s: float) -> None:
        count, oldest = await self.store.parked_summary()
        self.metrics.parked_fills.set(count)
        self.metrics.parked_oldest_seconds.set(0 if oldest is None else max(0.0, now_s - oldest))

    async def release(self, publish: Publish, now_s: float) -> None:
        """Dead-letter the fills parked too long, then settle those whose account arrived."""
        while due := await self.store.parked_since(now_s - self.park_hours * 3600, self.batch_max):
            hours = self.park_hours
            await publish(
                [
                    dead_letter(
                        self._record(p),
                        self.dead_letter_topic,
                        "unattributed",
                        f"login {p.login} not attributed {hours:g} h after the fill was parked",
                    )
                    for p in due
                ]
            )
            await self.store.unpark([(p, *_deal(p)) for p in due], dead=True)
            self.metrics.parked_released.labels("dead_lettered").inc(len(due))
            self.metrics.dead_letters.labels("unattributed").inc(len(due))
        logins = await self.store.parked_logins()
        if not logins:
            return  # nothing waits: no need to look at the rules
        await self.store.refresh_rules()
        version = self.store.rules_version
        if version == self._looked_at_version:
            return
        ready: list[tuple[ParkedFill, Fill]] = []
        for login in logins:
            for parked in await self.store.parked_of(login):
                fill = _fill(parked)  # None: not with this engine version; dead-lettered in time
                if fill is not None and self._attributed(fill):
                    ready.append((parked, fill))
        for start in range(0, len(ready), self.batch_max):
            chunk = ready[start : start + self.batch_max]
            result = await self.processor.process([self._record(p) for p, _ in chunk])
            await publish(result.outgoing)
            settled = [(p, f.server, f.deal, f.revision) for p, f in chunk]
            self.metrics.parked_released.labels("settled").inc(
                await self.store.unpark(settled, dead=False)
            )
        self._looked_at_version = version

    def _attributed(self, fill: Fill) -> bool:
        try:
            return self.store.book.resolve(fill.login, fill.close_time) is not None
        except ConfigError:
            return True  # the processor dead-letters it with the reason

    def _record(self, parked: ParkedFill) -> Record:
        # Its offset in fills.v1 is long committed; the dead letter names the topic only.
        return Record(parked.value, self.fills_topic, -1, -1)


def _fill(parked: ParkedFill) -> Fill | None:
    try:
        return decode_fill(parked.value)
    except BadFill:
        return None


def _deal(parked: ParkedFill) -> tuple[str, int, str]:
    fill = _fill(parked)
    return _NO_DEAL if fill is None else (fill.server, fill.deal, fill.revision)

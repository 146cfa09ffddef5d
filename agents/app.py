"""The Faust application: topics, the fills agent, timers and the HTTP views.

The agents are thin loops (STYLE): take a batch, hand it to `FillProcessor` (agents/fills.py),
publish what it returns, wait for the broker to acknowledge, then ack the batch so its offsets
can be committed (SPEC 7: offsets only move after the credits are safe).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import EventT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.crm import CrmEventHandler
from agents.fills import FillProcessor
from agents.late import LateResettlement
from agents.messages import Outgoing, Record
from agents.metrics import Metrics
from agents.parked import ParkRelease
from agents.settings import Settings
from agents.settlement import PeriodSettlement
from agents.storage.store import UNAVAILABLE, RedisStore, connect
from agents.topics import output_topics
from agents.transport import configure_app, faust_app_kwargs
from agents.wallet_commands import WalletCommandHandler, WalletConflict
from engine import __version__

__all__ = ["Engine", "build_app"]

log = logging.getLogger("rebate.app")

_T = TypeVar("_T")
_RETRY_FIRST_S = 0.05
_FINISH_ON_STOP_S = 20.0
_EXIT_UNCOMMITTED = 70  # EX_SOFTWARE: a supervisor restarts the worker
_RETRY_MAX_S = 2.0


@dataclass
class Engine:
    """Everything one worker holds: the Faust app and the engine parts its agents call."""

    settings: Settings
    app: faust.App
    store: RedisStore
    processor: FillProcessor
    metrics: Metrics
    topics: dict[str, faust.TopicT] = field(default_factory=dict)
    paused: bool = False
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    newest_fill_ts: float | None = None
    # Monotonic time the current (re)join began; None once the group completed a rebalance.
    # A worker starts out joining. A group stuck between join and sync never clears it.
    rebalance_since: float | None = field(default_factory=time.monotonic)

    def rebalance_seconds(self) -> float:
        since = self.rebalance_since
        return 0.0 if since is None else time.monotonic() - since

    async def publish(self, outgoing: Sequence[Outgoing]) -> None:
        """Send everything without awaiting one by one, then wait for all acknowledgements."""
        producer = self.app.producer
        futures = [
            await producer.send(o.topic, o.key, o.value, None, None, list(o.headers) or None)
            for o in outgoing
        ]
        if futures:
            await asyncio.gather(*futures)

    async def handle_fills(self, events: Sequence[EventT[Any]]) -> None:
        records = records_of(events)
        result = await self.until_redis_answers(lambda: self.processor.process(records))
        await self.publish(result.outgoing)
        now = time.time()
        for ts in result.timestamps_ms:
            self.metrics.fill_to_credit.observe(max(0.0, now - ts / 1000))
        for e in events:
            self.last_offsets[(e.message.topic, e.message.partition)] = e.message.offset
            e.ack()  # acked only now that its credits are acknowledged by the broker
        if result.timestamps_ms:
            self.newest_fill_ts = max(result.timestamps_ms) / 1000

    async def until_redis_answers(
        self, work: Callable[[], Awaitable[_T]], retry_on: tuple[type[Exception], ...] = ()
    ) -> _T:
        """Run `work`, pausing with jittered backoff while Redis is down or slow (SPEC 7).

        Nothing is skipped: the same batch is retried until it goes through, and the batch is
        not acked meanwhile, so Faust stops fetching once its buffer is full.
        """
        delay = _RETRY_FIRST_S
        errors: tuple[type[Exception], ...] = (*UNAVAILABLE, *retry_on)
        while True:
            try:
                result = await work()
            except errors as exc:
                if not self.paused:
                    log.warning("redis unavailable, pausing consumption: %s", type(exc).__name__)
                    self.metrics.pauses.inc()
                self.paused = True
                self.metrics.paused.set(1)
                self.processor.forget_accounts()  # what Redis holds is unknown until it answers
                # Jitter, so that workers do not hammer a recovering Redis in lockstep.
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            if self.paused:
                log.warning("redis answered again, consumption resumed")
                self.paused = False
                self.metrics.paused.set(0)
            return result

    def _assignment(self) -> set[Any]:
        """Assigned partitions; none while the consumer is still starting (web is up first)."""
        try:
            return set(self.app.consumer.assignment())
        except ConsumerNotStarted:
            return set()

    def update_lag(self) -> None:
        consumer = self.app.consumer
        assignment = self._assignment()
        fills = self.settings.topic_fills
        partitions = [tp for tp in assignment if tp.topic == fills]
        self.metrics.partitions_assigned.set(len(partitions))
        self.metrics.rebalance_seconds.set(self.rebalance_seconds())
        behind = 0
        for tp in partitions:
            high = consumer.highwater(tp)
            if high is None:
                continue
            done = self.last_offsets.get((tp.topic, tp.partition), -1) + 1
            lag = max(0, high - done) if done else high
            behind += lag
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        seconds = 0.0
        if behind and self.newest_fill_ts is not None:
            seconds = max(0.0, time.time() - self.newest_fill_ts)
        self.metrics.consumer_lag_seconds.set(seconds)

    async def readiness(self) -> dict[str, Any]:
        assigned = len([tp for tp in self._assignment() if tp.topic == self.settings.topic_fills])
        try:
            redis_ok = await asyncio.wait_for(self.store.ping(), timeout=1.0)
        except UNAVAILABLE:
            redis_ok = False
        return {
            "partitions_assigned": assigned,
            "redis": redis_ok,
            "paused": self.paused,
            "rebalancing_s": round(self.rebalance_seconds(), 1),
            "ready": assigned > 0 and redis_ok and not self.paused and not self.rebalance_since,
        }


async def whole_batch(work: Awaitable[None]) -> None:
    """Run one batch so that it either completes or the process ends without acking it.

    Faust's `take_events` acks a batch in a `finally`, so an exception or a cancellation
    escaping the loop body would let its offsets be committed with nothing published. So:
    on SIGTERM (the agent is cancelled) the batch in flight is finished first, as SPEC 7 asks;
    on an unexpected error, or if it cannot finish in time, the process exits at once and the
    batch is read again by whoever owns the partition next (processing is idempotent).
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(task), _FINISH_ON_STOP_S)
        except BaseException:
            log.critical("stopping: the batch in flight could not finish; exiting uncommitted")
            os._exit(_EXIT_UNCOMMITTED)
        raise
    except Exception:
        log.critical("a batch failed; exiting without committing it", exc_info=True)
        os._exit(_EXIT_UNCOMMITTED)


def records_of(events: Sequence[EventT[Any]]) -> list[Record]:
    """The consumed records of a batch, with what dead letters and latency need."""
    return [
        Record(
            e.message.value,
            e.message.topic,
            e.message.partition,
            e.message.offset,
            int(e.message.timestamp * 1000) if e.message.timestamp else None,
        )
        for e in events
    ]


def build_app(settings: Settings, metrics: Metrics | None = None) -> Engine:
    """The worker's Faust app, wired to Redis and our transport (services must be resolved)."""
    metrics = metrics or Metrics()
    metrics.info.info({"version": __version__})
    app = faust.App(
        settings.consumer_group,
        **faust_app_kwargs(settings),
        store="memory://",
        topic_disable_leader=True,
        stream_buffer_maxsize=max(4 * settings.batch_max, 4096),
    )
    configure_app(app, settings)
    store = RedisStore(connect(settings), depth_limit=settings.attribution_depth_limit)
    processor = FillProcessor(
        store,
        metrics,
        output_topics(settings),
        correction_window_hours=settings.correction_window_hours,
    )
    engine = Engine(settings, app, store, processor, metrics)
    for name, topic in settings.topics.items():
        engine.topics[name] = app.topic(topic, key_serializer="raw", value_serializer="raw")

    @app.agent(engine.topics["fills"], name="settle-fills")
    async def settle_fills(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_timeout_s):
            await whole_batch(engine.handle_fills(events))

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def lag() -> None:
        engine.update_lag()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(app: faust.App, revoked: Any, **_: Any) -> None:
        # Another worker may own these logins now: our cached wallet state is not to be trusted.
        engine.processor.forget_accounts()
        engine.rebalance_since = engine.rebalance_since or time.monotonic()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: Any, **_: Any) -> None:
        engine.rebalance_since = None  # the group's sync completed (an empty set counts too)

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        engine.update_lag()
        return web.bytes(
            generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "version": __version__})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        state = await engine.readiness()
        return web.json(state, status=200 if state["ready"] else 503)

    # -- wallet commands and IB settlement per payout period (SPEC 6) -----------------------
    wallet_commands = WalletCommandHandler(store, metrics, settings.topic_wallet_events)
    settlement = PeriodSettlement(
        store,
        metrics,
        settings.topic_settlements,
        settings.settlement_grace_s,
        credits_topic=settings.topic_credits,
    )

    @app.agent(engine.topics["wallet_commands"], name="wallet-commands")
    async def answer_wallet_commands(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_timeout_s):
            await whole_batch(answer(events))

    async def answer(events: Sequence[EventT[Any]]) -> None:
        out = await engine.until_redis_answers(
            partial(wallet_commands.handle, records_of(events)), retry_on=(WalletConflict,)
        )
        await engine.publish(out)
        for e in events:
            e.ack()  # acked only now that the answers are acknowledged by the broker

    # -- back-office events (SPEC 3 r2): one partition, applied in its order -----------------
    crm_events = CrmEventHandler(
        store, metrics, settings.topic_crm_events_dlq, settings.correction_window_hours
    )

    @app.agent(engine.topics["crm_events"], name="crm-events")
    async def apply_crm_events(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_timeout_s):
            await whole_batch(apply_events(events))

    async def apply_events(events: Sequence[EventT[Any]]) -> None:
        out = await engine.until_redis_answers(partial(crm_events.handle, records_of(events)))
        await engine.publish(out)
        for e in events:
            e.ack()  # acked only now that its dead letters are acknowledged by the broker

    # -- parked fills (SPEC 4.2 r2): released by the worker that owns the back-office topic ---
    park_release = ParkRelease(
        store,
        # A processor of its own: its cached wallet state is not the fills agent's (the script's
        # compare-and-set keeps both right when they meet on a login).
        FillProcessor(
            store,
            metrics,
            output_topics(settings),
            correction_window_hours=settings.correction_window_hours,
        ),
        metrics,
        fills_topic=settings.topic_fills,
        dead_letter_topic=settings.topic_fills_dlq,
        park_hours=settings.park_hours,
        batch_max=settings.batch_max,
    )

    # Late back-office changes (SPEC 3 r2): their re-settlement jobs, run by the same worker.
    late_changes = LateResettlement(store, metrics, output_topics(settings))

    @app.timer(settings.park_check_s)  # type: ignore[untyped-decorator]
    async def release_parked() -> None:
        try:
            await park_release.update_metrics(time.time())
            await late_changes.update_metrics()
            if any(tp.topic == settings.topic_crm_events for tp in engine._assignment()):
                await park_release.release(engine.publish, time.time())
                await late_changes.run(engine.publish)
        except UNAVAILABLE as exc:
            log.warning("parked fills / late changes: trying again next tick: %s", exc)
        except RuntimeError as exc:
            # A login that kept conflicting with new fills for every round: the job stays and
            # is tried again next tick (RebateLateChangesStuck if it never goes through). An
            # exception escaping a Faust timer would stop the whole worker.
            log.error("parked fills / late changes: trying again next tick: %s", exc)

    @app.timer(settings.settlement_interval_s)  # type: ignore[untyped-decorator]
    async def settle_hours() -> None:
        try:
            out = await settlement.flush(datetime.now(UTC))
            await engine.publish(out)
            await settlement.confirm(out)  # unconfirmed events are published again later
        except UNAVAILABLE as exc:
            log.warning("IB settlement: trying again next tick: %s", exc)

    return engine

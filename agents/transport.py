"""Faust's aiokafka transport with three latency fixes, wired in through its extension points.

faust-streaming 0.15.3 (pinned; tests/agents/test_transport_pin.py fails when any upstream code
below changes) costs us latency in three places. The fixes are subclasses, never patches of
faust's module globals, and all three are worth proposing upstream to faust-streaming:

1. `Consumer._drain_messages` hands every fetched message to the conductor through
   `self.wait_first(callback(message), self.suspend_flow.wait())`: four tasks (the callback,
   the suspend event, the service's stopped and crashed events) and an `asyncio.wait` per
   message. Our `Consumer` awaits the callback directly while flow is not suspended and keeps
   the upstream race when it is. The one difference: a callback already running when a
   rebalance suspends flow finishes instead of being abandoned. That is harmless because the
   message carries the old `generation_id`, so streams skip it (streams.py checks the
   generation), never ack it, and the partition is re-read from the committed offset.
   Upstream proposal: the same fast path in `faust.transport.consumer.Consumer`.

2. The worker's `AIOKafkaConsumer` is built with a hard-coded `fetch_max_wait_ms=1500`
   (faust/transport/drivers/aiokafka.py, `AIOKafkaConsumerThread._create_worker_consumer`):
   at low traffic a fetch parks on the broker for up to 1.5 s before returning what arrived.
   Our `ConsumerThread` sets it from `Settings.fetch_max_wait_ms` (default 10 ms) on the
   consumer it creates, before the consumer starts (aiokafka reads it in `start()`).
   Upstream proposal: a `consumer_fetch_max_wait_ms` app setting.

3. When an agent's buffer passes its high-water mark Faust pauses the partitions feeding it,
   and once every partition is paused `Consumer._wait_next_records` sleeps a fixed second,
   however fast the agent then drains its buffer. Draining a backlog (a restart, a burst)
   hits this repeatedly: measured, the first live fills after a 100k backlog waited ~0.6-0.8 s.
   Our `Consumer` wakes when `on_buffer_drop` re-activates a partition (at most 1 s, as
   before). Upstream proposal: the same event in `faust.transport.consumer.Consumer`.

How an app uses it (call before any topic or agent is declared on the app, because declaring
one creates the app's transport):

    settings = ...  # a Settings whose kafka_bootstrap_servers is set (see services_for)
    app = faust.App(settings.consumer_group, **faust_app_kwargs(settings))
    configure_app(app, settings)

`Transport` also works when Faust resolves it from a broker URL scheme, once pyproject.toml
registers it: `[project.entry-points."faust.transports"] rebate = "agents.transport:Transport"`,
then `broker="rebate://host:9092"`; it then reads `Settings()` from the environment.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import TYPE_CHECKING, Any, ClassVar, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING, RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, ConsumerT
from mode import Service, ServiceT
from yarl import URL

from agents.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "Consumer",
    "ConsumerThread",
    "Transport",
    "configure_app",
    "faust_app_kwargs",
    "faust_credentials",
]


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Creates the aiokafka consumer with our `fetch_max_wait_ms` instead of Faust's 1500."""

    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        consumer = super()._create_consumer(loop)
        settings = cast(Transport, self.transport).settings
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, and the thread starts
        # the consumer only after this returns. The pin test checks both facts.
        consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer: no per-message tasks, no 1 s nap under back-pressure."""

    # Set when back-pressure releases a partition; created on first use, in the running loop.
    _partition_resumed: asyncio.Event | None = None

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _resumed_event(self) -> asyncio.Event:
        if self._partition_resumed is None:
            self._partition_resumed = asyncio.Event()
        return self._partition_resumed

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._resumed_event().set()

    async def _wait_next_records(
        self,
        timeout: float,  # noqa: ASYNC109 - upstream's signature
    ) -> tuple[RecordMap | None, set[TP] | None]:
        # Copied from faust.transport.consumer.Consumer._wait_next_records (0.15.3); the only
        # change is marked PAUSED PATH.
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]  # as upstream

        try:
            # Set signal that _wait_next_records is waiting on the fetcher service.
            self.not_waiting_next_records.set()
            # Implementation for the Fetcher service.
            is_client_only = self.app.client_only

            active_partitions: set[TP] | None
            if is_client_only:  # noqa: SIM108 - as upstream
                active_partitions = None
            else:
                active_partitions = self._get_active_partitions()

            records: RecordMap = {}
            if is_client_only or active_partitions:
                # Fetch records only if active partitions to avoid the risk of
                # fetching all partitions in the beginning when none of the
                # partitions is paused/resumed.
                records = await self._getmany(
                    active_partitions=active_partitions,
                    timeout=timeout,
                )
            else:
                # PAUSED PATH: every partition is paused because the agents' buffers are full.
                # Upstream sleeps 1 s here even when the buffer drains in milliseconds; wake
                # as soon as on_buffer_drop() re-activates a partition (still at most 1 s).
                # No await since active_partitions was read, so no wake-up can be missed.
                resumed = self._resumed_event()
                resumed.clear()
                await self.wait_first(resumed.wait(), timeout=1.0)
            return records, active_partitions
        finally:
            self.not_waiting_next_records.set()

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover
        # Copied from faust.transport.consumer.Consumer._drain_messages (0.15.3); the only
        # change is marked FAST PATH. Keep the rest identical so the diff stays reviewable.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        suspended = self.suspend_flow.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast("AsyncIterator[Any]", getmany(timeout=1.0))

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:  # noqa: SIM102 - as upstream
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            # FAST PATH: no tasks while flow runs (see module docstring).
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                await callback(message)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport using our `Consumer`, configured from `Settings`."""

    Consumer: ClassVar[type[ConsumerT]] = Consumer

    def __init__(
        self,
        url: list[URL],
        app: AppT,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(url, app, loop=loop)
        # Faust itself constructs transports as cls(urls, app) (broker URL scheme path), so
        # without explicit settings read them from the environment like everything else.
        self.settings = settings if settings is not None else Settings()


def configure_app(app: faust.App, settings: Settings) -> None:
    """Make `app` consume and produce through our `Transport`, configured by `settings`.

    Call it right after `faust.App(...)`: declaring a topic or agent creates the app's
    transport, and a consumer built from Faust's own transport would not have our fixes.
    """
    if app._transport is not None or app._producer_transport is not None:
        raise RuntimeError("configure_app() must run before any topic/agent is declared on the app")
    app.transport = Transport(app.conf.broker_consumer, app, settings=settings)
    app.producer_transport = Transport(app.conf.broker_producer, app, settings=settings)


def faust_credentials(settings: Settings) -> faust.auth.Credentials | None:
    """Faust's `broker_credentials` for the Kafka security settings (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    context = settings.kafka_ssl_context()
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        assert settings.kafka_sasl_password is not None  # Settings validates SASL fields
        # Faust picks SASL_SSL exactly when it is given a TLS context.
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if protocol == "SSL":
        assert context is not None
        return faust.SSLCredentials(context)
    return None


def faust_app_kwargs(settings: Settings) -> dict[str, Any]:
    """`faust.App(...)` keyword arguments derived from `settings` (services must be resolved)."""
    if settings.kafka_bootstrap_servers is None:
        raise ValueError("resolve the broker first (harness.embedded.services_for)")
    brokers = [f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap_servers.split(",")]
    return {
        "broker": brokers,
        "broker_credentials": faust_credentials(settings),
        # Tansu (and Kafka without transactions configured) cannot do exactly_once; the
        # engine makes at-least-once idempotent in Redis instead (SPEC section 7).
        "processing_guarantee": "at_least_once",
        # Faust's default data directory is "<app id>-data" in the current directory; the
        # engine keeps no state there (no tables), so a private temp dir keeps checkouts clean.
        "datadir": tempfile.mkdtemp(prefix="rebate-faust-"),
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "broker_rebalance_timeout": settings.rebalance_timeout_s,
        "consumer_auto_offset_reset": "earliest",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
    }

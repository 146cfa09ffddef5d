"""Fail when the upstream code agents/transport.py overrides, copies or relies on changes.

faust-streaming is pinned (==0.15.3). An upgrade must re-check every method below against
agents/transport.py (and drop our copy if upstream took the fix), then record the new hashes.
"""

from __future__ import annotations

import hashlib
import inspect
from importlib.metadata import version
from typing import Any

import faust.app.base
import faust.streams
import faust.transport.consumer
import faust.transport.drivers.aiokafka as faust_aiokafka
import pytest
from aiokafka import AIOKafkaConsumer

_CONSUMER_THREAD = faust_aiokafka.AIOKafkaConsumerThread

# What we depend on -> sha256 of its source in faust-streaming 0.15.3.
PINNED: dict[str, tuple[Any, str]] = {
    # copied into agents.transport.Consumer._drain_messages (the per-message-task fix)
    "Consumer._drain_messages": (
        faust.transport.consumer.Consumer._drain_messages,
        "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417",
    ),
    # copied into agents.transport.Consumer._wait_next_records (the back-pressure nap fix),
    # and the two buffer callbacks it relies on (on_buffer_drop is extended to wake it)
    "Consumer._wait_next_records": (
        faust.transport.consumer.Consumer._wait_next_records,
        "6218e1969a636b3ff504ad1b8e7ad58a113572e43d746cc96d684ed5153032c6",
    ),
    "Consumer.on_buffer_drop": (
        faust.transport.consumer.Consumer.on_buffer_drop,
        "4b57e8a418d5ad9c58632b13b58b377ae185855520fd1280870cf7141ac0d1d0",
    ),
    "Consumer.on_buffer_full": (
        faust.transport.consumer.Consumer.on_buffer_full,
        "c8961679e0bcdce5c23b07143d687ec8814492012e176332552e81b8feb7862c",
    ),
    # overridden to return our ConsumerThread
    "aiokafka.Consumer._new_consumer_thread": (
        faust_aiokafka.Consumer._new_consumer_thread,
        "0870ec53dea75083995e3565c0f0a25a1c63ecceaeb238e92e2585e3623af5a9",
    ),
    # overridden (super() + fetch_max_wait_ms); the two builders it dispatches to, and
    # on_start, which must create the consumer before starting it
    "AIOKafkaConsumerThread._create_consumer": (
        _CONSUMER_THREAD._create_consumer,
        "a4dc6ba0681a298c05d60994890984fe35edee17dea101f8071da9456700c238",
    ),
    "AIOKafkaConsumerThread._create_worker_consumer": (
        _CONSUMER_THREAD._create_worker_consumer,
        "c2701bfc3e6f6cad95c2be36d6a255a86e2c57d18d36cc1082b5fb5c482d99d7",
    ),
    "AIOKafkaConsumerThread._create_client_consumer": (
        _CONSUMER_THREAD._create_client_consumer,
        "0f3b782052556af9ad60f9a0144b6c61d4c89f27cb780bef2989e40f3cfb5889",
    ),
    "AIOKafkaConsumerThread.on_start": (
        _CONSUMER_THREAD.on_start,
        "38b4e8bd1e10723aed02bb1e8c74ccb02a0b04dec35b9001c51f45fa7f2b611c",
    ),
    # overridden (adds the settings keyword)
    "aiokafka.Transport.__init__": (
        faust_aiokafka.Transport.__init__,
        "a06006f6ae8ed716924398bbdc42f3a8471f9f6704dfe475c4a66ff36a45734c",
    ),
    # configure_app() replaces what these would build, through these setters
    "App._new_transport": (
        faust.app.base.App._new_transport,
        "42db531312dd776fc3937154a32f19eeb9ad7d4ebc2722a92d081a2d271baea1",
    ),
    "App._new_producer_transport": (
        faust.app.base.App._new_producer_transport,
        "eb3b4aa6a89612750b7e3159e5339850dd816fbf15a78948ef204bc2c0ec3a6b",
    ),
    "App.transport": (
        faust.app.base.App.transport,
        "e0576328a9e91017ee017d010dc5240f1eb3f6c89f70512d327c9abd873ac9a5",
    ),
    "App.producer_transport": (
        faust.app.base.App.producer_transport,
        "9db999949ac44e53736f66e0a82ffb927661b3faf9e67804fbb162daf6e49918",
    ),
    # the generation_id check that makes our fast path safe across a rebalance
    "Stream._py_aiter": (
        faust.streams.Stream._py_aiter,
        "3a48ee257a65435b482d51edb74f2993a67867949b1ef89b49fea893769e0614",
    ),
}


def _source(obj: Any) -> str:
    if isinstance(obj, property):
        return inspect.getsource(obj.fget) + inspect.getsource(obj.fset)
    return inspect.getsource(obj)


def test_faust_version_is_the_pinned_one() -> None:
    assert version("faust-streaming") == "0.15.3"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_upstream_source_unchanged(name: str) -> None:
    obj, expected = PINNED[name]
    actual = hashlib.sha256(_source(obj).encode()).hexdigest()
    assert actual == expected, f"{name} changed upstream: re-check agents/transport.py"


def test_faust_still_hard_codes_the_fetch_wait() -> None:
    # When this fails upstream made it configurable: use that setting instead of ours.
    assert "fetch_max_wait_ms=1500" in inspect.getsource(_CONSUMER_THREAD._create_worker_consumer)


async def test_aiokafka_reads_fetch_wait_from_the_attribute_we_set() -> None:
    # aiokafka is not pinned exactly, so check the contract rather than a hash: the value
    # lives in `_fetch_max_wait_ms` until start() hands it to the Fetcher.
    consumer = AIOKafkaConsumer(fetch_max_wait_ms=1234)
    try:
        assert consumer._fetch_max_wait_ms == 1234
    finally:
        await consumer.stop()  # never started, but __del__ warns about unclosed consumers
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)

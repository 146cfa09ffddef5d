"""The engine against a real TLS Redis with an ACL user (README, Operations: Secured links).

A CA, a server and a client certificate are made with `openssl`; `redis-server` listens on TLS
only, its default user is off and the engine's user may touch `rebate:*` keys only, without
dangerous commands. Everything connects through `Settings` read from the documented variables
(`REDIS_URL=rediss://...`, `REBATE_REDIS_USERNAME/PASSWORD`, `REBATE_REDIS_SSL_*`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection

from agents.fills import FillProcessor
from agents.logs import JsonFormatter, scrub
from agents.messages import Record
from agents.metrics import Metrics
from agents.settings import Settings
from agents.storage.store import RedisStore
from harness.embedded import answers_ping
from harness.kafka_replay import publish_and_collect
from tests.factories import TOPICS
from tests.integration._certs import OPENSSL, SERVER_EXT, make_ca, make_leaf
from tests.integration._helpers import (
    load_seed,
    offline_credits,
    server,
    simulated,
    wait_ready,
)
from tests.integration.fixtures import deploy

REDIS_SERVER = shutil.which("redis-server")
USER = "rebate-engine"
PASSWORD = f"tls-acl-{uuid.uuid4().hex}"  # distinctive: searched for in every log

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None or OPENSSL is None, reason="needs redis-server and openssl on PATH"
)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing of ours


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "rebate-test-ca")
    server_cert, server_key = make_leaf(d, "redis", ca, SERVER_EXT)
    client_cert, client_key = make_leaf(d, "rebate-worker", ca, "extendedKeyUsage=clientAuth")
    other_ca, _ = make_ca(d, "somebody-else-ca")
    return Certs(ca[0], server_cert, server_key, client_cert, client_key, other_ca)


def _ping_tls(port: int, certs: Certs) -> bool:
    client = redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(certs.ca),
        ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key),
        username=USER, password=PASSWORD, socket_timeout=0.5, socket_connect_timeout=0.5,
    )  # fmt: skip
    return answers_ping(client)


def _tls_redis(tmp: Path, certs: Certs, auth_clients: str) -> Iterator[int]:
    """redis-server on a TLS port only, default user off, one least-privilege ACL user."""
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",
                "bind 127.0.0.1",
                f"tls-cert-file {certs.server_cert}",
                f"tls-key-file {certs.server_key}",
                f"tls-ca-cert-file {certs.ca}",
                f"tls-auth-clients {auth_clients}",
                'save ""',
                "appendonly no",
                f"dir {tmp}",
                "user default off",
                f"user {USER} on >{PASSWORD} ~rebate:* +@all -@dangerous",
                "",
            ]
        )
    )
    conf.chmod(0o600)
    with server(
        f"redis-tls-{auth_clients}",
        lambda port: [str(REDIS_SERVER), str(conf), "--tls-port", str(port)],
        lambda port: _ping_tls(port, certs),
        tmp / "redis.log",
    ) as proc:
        yield proc.port


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[int]:
    """Client certificates optional: the CA + ACL user path."""
    yield from _tls_redis(tmp_path_factory.mktemp("redis-tls"), certs, "optional")


def _env_settings(
    monkeypatch: pytest.MonkeyPatch, port: int, db: int, **env: str | Path
) -> Settings:
    """Settings exactly as a deployment reads them from its environment."""
    monkeypatch.setenv("REDIS_URL", f"rediss://127.0.0.1:{port}/{db}")
    monkeypatch.setenv("REBATE_REDIS_USERNAME", USER)
    monkeypatch.setenv("REBATE_REDIS_PASSWORD", PASSWORD)
    for name, value in env.items():
        if value == "":
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))
    return Settings()


def _client(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url or "", **settings.redis_client_kwargs())


@pytest.mark.timeout(60)
async def test_store_and_processor_settle_over_tls_as_acl_user(
    monkeypatch: pytest.MonkeyPatch, tls_port: int, certs: Certs
) -> None:
    settings = _env_settings(monkeypatch, tls_port, 1, REBATE_REDIS_SSL_CAFILE=certs.ca)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in settings.model_dump_json()
    seed, lines = simulated(accounts=40, fills=300, rng_seed=3)
    client = _client(settings)
    try:
        assert client.connection_pool.connection_class is SSLConnection
        assert await client.acl_whoami() == USER
        store = RedisStore(client)
        assert await store.load_seed(seed) is not None
        processor = FillProcessor(store, Metrics(), TOPICS)
        records = [Record(line, "fills.v1", 0, offset) for offset, line in enumerate(lines)]
        credits = []
        for start in range(0, len(records), 100):
            result = await processor.process(records[start : start + 100])
            credits += [o.value for o in result.outgoing if o.topic == "credits.v1"]
        # Processing the stream again changes nothing and re-emits the stored credits.
        again = await FillProcessor(store, Metrics(), TOPICS).process(records)
    finally:
        await client.aclose()
    assert credits, "the stream earned no credits"
    assert sorted(credits) == sorted(offline_credits(seed, lines))
    assert sorted(o.value for o in again.outgoing if o.topic == "credits.v1") == sorted(credits)


async def _connect_error(settings: Settings) -> redis.RedisError:
    client = _client(settings)
    try:
        with pytest.raises(redis.RedisError) as caught:
            await client.ping()
    finally:
        await client.aclose()
    return caught.value


@pytest.mark.timeout(60)
async def test_bad_credentials_or_trust_fail_clearly(
    monkeypatch: pytest.MonkeyPatch, tls_port: int, certs: Certs
) -> None:
    ca = {"REBATE_REDIS_SSL_CAFILE": certs.ca}
    errors = {
        "wrong password": await _connect_error(
            _env_settings(monkeypatch, tls_port, 0, **ca, REBATE_REDIS_PASSWORD="not-it")
        ),
        "default user (off)": await _connect_error(
            _env_settings(monkeypatch, tls_port, 0, **ca, REBATE_REDIS_USERNAME="default")
        ),
        "no CA file (system CAs)": await _connect_error(
            _env_settings(monkeypatch, tls_port, 0, REBATE_REDIS_SSL_CAFILE="")
        ),
        "another CA": await _connect_error(
            _env_settings(monkeypatch, tls_port, 0, REBATE_REDIS_SSL_CAFILE=certs.other_ca)
        ),
    }
    assert isinstance(errors["wrong password"], redis.AuthenticationError)
    assert "invalid username-password pair" in str(errors["wrong password"])
    assert isinstance(errors["default user (off)"], redis.AuthenticationError)
    for case in ("no CA file (system CAs)", "another CA"):
        assert isinstance(errors[case], redis.ConnectionError), case
        assert "certificate verify failed" in str(errors[case]), (case, str(errors[case]))
    for case, error in errors.items():
        assert PASSWORD not in str(error), case

    # Plain redis:// to a TLS port, and TLS files without rediss://, are refused too.
    monkeypatch.delenv("REBATE_REDIS_SSL_CAFILE", raising=False)
    plain = _env_settings(monkeypatch, tls_port, 0)
    plain = plain.model_copy(update={"redis_url": f"redis://127.0.0.1:{tls_port}/0"})
    assert isinstance(await _connect_error(plain), redis.ConnectionError)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{tls_port}/0")
    monkeypatch.setenv("REBATE_REDIS_SSL_CAFILE", str(certs.ca))
    with pytest.raises(ValueError, match="rediss://"):
        Settings()


@pytest.mark.timeout(60)
async def test_mutual_tls_needs_the_client_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, certs: Certs
) -> None:
    with contextlib.contextmanager(_tls_redis)(tmp_path / "mtls", certs, "yes") as port:
        ca = {"REBATE_REDIS_SSL_CAFILE": certs.ca}
        without = _env_settings(monkeypatch, port, 0, **ca)
        error = await _connect_error(without)
        with_cert = _env_settings(
            monkeypatch, port, 0, **ca,
            REBATE_REDIS_SSL_CERTFILE=certs.client_cert, REBATE_REDIS_SSL_KEYFILE=certs.client_key,
        )  # fmt: skip
        client = _client(with_cert)
        try:
            assert await client.acl_whoami() == USER
        finally:
            await client.aclose()
    assert isinstance(error, redis.ConnectionError)


def test_scrub_hides_the_redis_password() -> None:
    url = f"rediss://{USER}:{PASSWORD}@redis.internal:6380/0"
    texts = [
        f"Error connecting to {url}",
        f"password={PASSWORD}",
        f"{{'username': '{USER}', 'password': '{PASSWORD}'}}",
        f"REBATE_REDIS_PASSWORD={PASSWORD}",
    ]
    for text in texts:
        assert PASSWORD not in scrub(text), text
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "redis %s", (url,), None)
        record.exc_info = sys.exc_info()
    assert PASSWORD not in JsonFormatter().format(record)


@pytest.mark.timeout(120)
async def test_worker_credits_fills_over_tls(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tls_port: int, certs: Certs, tmp_path: Path
) -> None:
    tls = _env_settings(monkeypatch, tls_port, 2, REBATE_REDIS_SSL_CAFILE=certs.ca)
    redis_fields = {
        name: getattr(tls, name)
        for name in (
            "redis_url",
            "redis_username",
            "redis_password",
            "redis_ssl_cafile",
            "redis_ssl_certfile",
            "redis_ssl_keyfile",
        )
    }
    seed, lines = simulated(accounts=30, fills=120, rng_seed=5)
    with deploy(
        settings,
        "redis-tls",
        tmp_path,
        own_redis_db=False,
        flush=False,
        topic_partitions=2,
        **redis_fields,
    ) as dep:
        await load_seed(dep.settings, seed)
        worker = dep.start_worker(wait=False)
        await asyncio.to_thread(wait_ready, worker)
        state = worker.readiness()
        collected = await publish_and_collect(dep.settings, lines, timeout_s=60)
        log = worker.log_path.read_text(errors="replace")
    assert state is not None and state["redis"] is True
    assert sorted(collected.credits) == sorted(offline_credits(seed, lines))
    assert log.strip(), "the worker logged nothing"
    assert PASSWORD not in log

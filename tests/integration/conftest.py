"""A real Kafka-protocol broker and Redis for the integration tier, chosen once per session.

In order: `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` from the environment (each on its own), a
Docker engine through testcontainers when one answers within a second or two, else the
embedded runtime (Tansu + a private redis-server, see harness/embedded.py).

The broker is a parameter: `REBATE_TEST_BROKER=tansu|kafka|both` (default both where `java` and
`mvn` answer, else tansu). "tansu" is the session's broker above; "kafka" is Apache Kafka itself
(harness/apache_kafka.py), started once when the first test needs it. A test runs on the first
chosen broker only, unless marked `@pytest.mark.brokers("tansu", "kafka")` (each chosen one of
those) or `@pytest.mark.brokers("kafka")` (Kafka only; skipped when Kafka is not chosen).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agents.settings import Settings
from agents.topics import delete_topics_sync, ensure_topics_sync
from harness.apache_kafka import ApacheKafka, missing_tools, resolve_kafka
from harness.embedded import EmbeddedRuntime

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_DOCKER_PING_TIMEOUT_S = 2
_BROKERS = ("tansu", "kafka")


def _chosen_brokers() -> tuple[list[str], str]:
    """The brokers this session runs on, and the line saying why."""
    wanted = os.environ.get("REBATE_TEST_BROKER", "").strip().lower()
    if wanted in _BROKERS:
        return [wanted], f"REBATE_TEST_BROKER={wanted}"
    if wanted not in ("", "both"):
        raise pytest.UsageError(f"REBATE_TEST_BROKER={wanted!r}: tansu, kafka or both")
    why_not = missing_tools()
    if wanted == "" and why_not:
        return ["tansu"], f"tansu only: Apache Kafka needs Java and Maven ({why_not})"
    return list(_BROKERS), "both (REBATE_TEST_BROKER=tansu|kafka|both)"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # A summary line, not a header: `pytest -q` shows no header, and this conftest is only
    # loaded once collection reaches tests/integration.
    terminalreporter.write_line(f"integration brokers: {_chosen_brokers()[1]}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" not in metafunc.fixturenames:
        return
    chosen, why = _chosen_brokers()
    marker = metafunc.definition.get_closest_marker("brokers")
    wanted = marker.args if marker else chosen[:1]
    names: list[Any] = [b for b in chosen if b in wanted]
    # A Kafka-only test in a Tansu-only session still shows up, as skipped with the reason.
    params = names or [pytest.param(wanted[0], marks=pytest.mark.skip(reason=why))]
    # Session scope: pytest groups the tests by broker, so each broker starts once.
    metafunc.parametrize("broker", params, indirect=True, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this directory talks to real services; mark it so `-m "not integration"`
    # gives a fast run.
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
    # Resolve Apache Kafka now, not inside the first Kafka test: a first resolution downloads
    # ~45 MB, and that must not count against a test's timeout.
    callspecs = (getattr(item, "callspec", None) for item in items)
    if any(c is not None and c.params.get("broker") == "kafka" for c in callspecs):
        resolve_kafka()


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings  # from the environment, with both service addresses filled in
    source: str  # "env", "docker", "embedded" or a mix like "env+embedded"
    runtime: EmbeddedRuntime | None


def _docker_endpoint_accepts() -> bool:
    # Connect by hand first: docker-py leaks its socket when the connect fails, and pytest
    # (filterwarnings=error) turns that ResourceWarning into an error.
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    url = urlsplit(host)
    try:
        if url.scheme == "unix":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(_DOCKER_PING_TIMEOUT_S)
                sock.connect(url.path)
        elif url.scheme in ("tcp", "http", "https"):
            address = (url.hostname or "localhost", url.port or 2375)
            socket.create_connection(address, timeout=_DOCKER_PING_TIMEOUT_S).close()
        else:  # ssh:// and friends: let docker-py try
            return True
    except OSError:
        return False
    return True


def _docker_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    if not _docker_endpoint_accepts():
        return False
    try:
        client = docker.from_env(timeout=_DOCKER_PING_TIMEOUT_S)
    except Exception:  # daemon refused the version query: treat as no Docker
        return False
    try:
        return bool(client.ping())
    except Exception:  # no permission, daemon unhealthy: all mean "no Docker"
        return False
    finally:
        client.close()


def _docker_services(
    stack: contextlib.ExitStack, need_kafka: bool, need_redis: bool
) -> dict[str, str]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    found: dict[str, str] = {}
    if need_kafka:
        kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft())
        found["kafka"] = kafka.get_bootstrap_server()
    if need_redis:
        redis = stack.enter_context(RedisContainer("redis:7"))
        host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
        found["redis"] = f"redis://{host}:{port}/0"
    return found


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    env = Settings()  # the same variables, security settings included, as the engine reads
    kafka, redis = env.kafka_bootstrap_servers, env.redis_url
    sources = ["env"] if (kafka or redis) else []
    runtime: EmbeddedRuntime | None = None
    with contextlib.ExitStack() as stack:
        if (kafka is None or redis is None) and _docker_answers():
            found = _docker_services(stack, kafka is None, redis is None)
            kafka, redis = kafka or found.get("kafka"), redis or found.get("redis")
            sources.append("docker")
        if kafka is None or redis is None:
            runtime = stack.enter_context(EmbeddedRuntime(kafka=kafka is None, redis=redis is None))
            kafka = kafka or runtime.bootstrap_servers
            redis = redis or runtime.redis_url
            sources.append("embedded")
        log.info("integration services: kafka=%s redis=%s via %s", kafka, redis, sources)
        settings = env.with_services(bootstrap_servers=kafka, redis_url=redis)
        yield Services(settings, "+".join(sources), runtime)


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> str:
    """The broker of this test: tansu or kafka (see pytest_generate_tests)."""
    return str(request.param)


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[ApacheKafka]:
    """Apache Kafka for the whole session, started by the first test that runs on it."""
    with ApacheKafka() as kafka:
        log.info("Apache Kafka %s ready in %.1f s", kafka.version, kafka.last_start_s)
        yield kafka


@pytest.fixture(scope="session")
def settings(services: Services, broker: str, request: pytest.FixtureRequest) -> Settings:
    """Settings from the environment pointing at this test's broker and the session's Redis."""
    if broker == "kafka":
        kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
        redis = services.settings.redis_url or ""
        return services.settings.with_services(
            bootstrap_servers=kafka.bootstrap_servers, redis_url=redis
        )
    return services.settings


@pytest.fixture
def kafka_broker(broker: str, request: pytest.FixtureRequest) -> Iterator[ApacheKafka]:
    """Apache Kafka for broker fault tests (kill, restart); running again after the test."""
    if broker != "kafka":
        pytest.skip("needs Apache Kafka")
    kafka: ApacheKafka = request.getfixturevalue("apache_kafka")
    yield kafka
    if not kafka.running:
        kafka.start()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> str:
    assert settings.kafka_bootstrap_servers is not None
    return settings.kafka_bootstrap_servers


@pytest.fixture(scope="session")
def redis_url(settings: Settings) -> str:
    assert settings.redis_url is not None
    return settings.redis_url


@pytest.fixture
def embedded_runtime(services: Services) -> Iterator[EmbeddedRuntime]:
    """The embedded runtime, for fault tests (SIGSTOP Redis...); skips on other backends.

    Function-scoped on purpose: after each test every process it paused is resumed and every
    one it stopped is restarted on its old port, so later tests find the services as usual.
    """
    runtime = services.runtime
    if runtime is None:
        pytest.skip(f"needs the embedded runtime; services come from {services.source}")
    yield runtime
    for proc in (runtime.kafka, runtime.redis):
        if proc is None:
            continue
        if proc.running:
            proc.resume()  # a no-op on a running process, undoes a forgotten pause()
        else:
            proc.start(proc.port)


@pytest.fixture
def make_topic(
    settings: Settings, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Factory: `make_topic("fills", partitions=8)` creates a topic no other test sees.

    Deleted again after the test (best effort), so a long session does not fill the broker.
    """
    created: list[str] = []

    def make(prefix: str = "topic", *, partitions: int = 1) -> str:
        name = unique_name(prefix)
        ensure_topics_sync(settings, {name: partitions})
        created.append(name)
        return name

    yield make
    if created:
        with contextlib.suppress(Exception):
            delete_topics_sync(settings, created)

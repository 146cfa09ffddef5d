"""Apache Kafka itself, for tests and benchmarks: one KRaft broker+controller we start and stop.

The broker is the official `org.apache.kafka:kafka_2.13` artifact and its runtime dependencies,
resolved once by Maven into a cache outside the checkout (`~/.cache/rebate-engine/kafka-<v>/`,
`$XDG_CACHE_HOME` is honoured), then run by `java` from that class path:

    with ApacheKafka() as kafka:        # formats a fresh log dir, starts, waits for Metadata
        kafka.bootstrap_servers
        kafka.kill(); kafka.start()     # kill -9, then the same ports and the same log dir
        kafka.restart()                 # SIGTERM (a controlled shutdown), then start again

    with ApacheKafka(secured=SaslSslListener(keystore, {"worker": password})) as kafka:
        kafka.secured_bootstrap_servers # a SASL_SSL (SCRAM-SHA-512) listener beside PLAINTEXT

Like the embedded runtime (harness/embedded.py, whose ManagedProcess it reuses) it listens on
free loopback ports, is stopped by PID (SIGTERM, SIGKILL after the stop timeout), also at
interpreter exit and when the starting thread dies, and writes its output (log4j at WARN) to a
log file, never to the console.

Kafka 4.x, not 3.9: aiokafka 0.14 and faust-streaming 0.15.3 (which consumes through aiokafka)
speak the protocol versions Kafka 4.0 kept (KIP-896 removed only very old ones); the
integration tests that run on both brokers are the proof.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from harness.embedded import (
    EmbeddedRuntimeError,
    ManagedProcess,
    free_port,
    kafka_ready,
)

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "SaslSslListener",
    "missing_tools",
    "resolve_kafka",
]

KAFKA_VERSION = "4.1.1"
_SCALA = "2.13"
_LOOPBACK = "127.0.0.1"
_NODE_ID = 1
_RESOLVE_TIMEOUT_S = 900.0  # a first resolution downloads ~45 MB of jars

# Only the artifact we run; Maven resolves its runtime dependencies. The log4j binding is not
# among them (the Kafka distribution ships it in its own libs/): without it slf4j logs nothing.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.rebate-engine</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>{version}</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
"""

# One node, replication factor 1 everywhere; small internal topics and no initial rebalance
# delay so that a test's first consumer group forms in a second, not in 3 s plus 50 partitions.
_SERVER_PROPERTIES = """process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={node_id}@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}{secured_listener}
advertised.listeners=PLAINTEXT://{host}:{port}{secured_listener}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs={log_dir}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""

# The secured listener: TLS with the broker's PEM key and certificate, SCRAM-SHA-512 users that
# the storage format writes into the cluster metadata (no ZooKeeper, no admin call needed).
_SASL_SSL_PROPERTIES = """sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\\
  org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={keystore}
"""


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL listener (SCRAM-SHA-512) the broker opens beside its PLAINTEXT one.

    `keystore` is one PEM file: the broker's unencrypted PKCS#8 private key, then its
    certificate (chain). `users` maps SCRAM user names to passwords, created at format time.
    The harness itself (readiness, topic admin in tests) keeps using the PLAINTEXT listener.
    """

    keystore: Path
    users: Mapping[str, str]

    def scram_arguments(self) -> list[str]:
        """kafka-storage format's `--add-scram` arguments, one per user."""
        return [
            arg
            for name, password in self.users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]


def missing_tools() -> str | None:
    """Why Apache Kafka cannot run here (no `java` or no `mvn` on PATH), None when it can."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return f"no {' and no '.join(missing)} on PATH" if missing else None


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rebate-engine" / f"kafka-{version}"


def resolve_kafka(version: str = KAFKA_VERSION) -> Path:
    """The directory of Kafka's jars, resolved by Maven on first use (locked, so concurrent
    callers wait for one resolution instead of running two)."""
    home = cache_dir(version)
    libs = home / "libs"
    done = home / "resolved"
    if done.exists():
        return libs
    reason = missing_tools()
    if reason:
        raise EmbeddedRuntimeError(f"Apache Kafka needs Java and Maven: {reason}")
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return libs
        (home / "pom.xml").write_text(_POM.format(version=version, scala=_SCALA))
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        argv = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=_RESOLVE_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise EmbeddedRuntimeError(f"Maven could not resolve Kafka {version}:\n{tail}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (home / "log4j2.properties").write_text(_LOG4J2)
        done.write_text(f"{version}\n")
    return libs


def _cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. Like Kafka's
    # own Uuid.randomUuid, never one starting with "-": kafka-storage's argument parser takes
    # it for an option (`--cluster-id: expected one argument`), 1 start in 64 otherwise.
    while True:
        ident = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not ident.startswith("-"):
            return ident


class ApacheKafka:
    """One Apache Kafka node (broker + KRaft controller) on loopback, its log dir on disk."""

    def __init__(
        self,
        *,
        version: str = KAFKA_VERSION,
        heap_mb: int = 384,
        work_dir: Path | None = None,
        keep_files: bool = False,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
        max_lifetime_s: float = 3600.0,
        secured: SaslSslListener | None = None,
    ) -> None:
        self.version = version
        self.secured = secured
        self._max_lifetime_s = max_lifetime_s
        self._heap_mb = heap_mb
        self._own_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="rebate-kafka-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.work_dir / "data"
        self._keep_files = keep_files
        self._controller_port = 0
        self._secured_port = 0
        self._config_for_port = 0
        self.last_start_s = 0.0  # seconds from spawning the JVM to the first Metadata answer
        self.process = ManagedProcess(
            "kafka",
            self._argv,
            kafka_ready,
            self.work_dir / "kafka.log",
            startup_timeout_s=startup_timeout_s,
            stop_timeout_s=stop_timeout_s,
        )
        self._atexit_registered = False

    @property
    def bootstrap_servers(self) -> str:
        if not self.process.port:
            raise EmbeddedRuntimeError("Apache Kafka has not been started")
        return f"{_LOOPBACK}:{self.process.port}"

    @property
    def secured_bootstrap_servers(self) -> str:
        """The SASL_SSL listener's `host:port` (only with `secured=`)."""
        if self.secured is None or not self._secured_port:
            raise EmbeddedRuntimeError("Apache Kafka has no secured listener running")
        return f"{_LOOPBACK}:{self._secured_port}"

    @property
    def pid(self) -> int | None:
        """PID of the Java process (the child of the `timeout` wrapper we started)."""
        wrapper = self.process.pid
        if wrapper is None:
            return None
        try:
            children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
        except OSError:
            return wrapper
        return int(children[0]) if children else wrapper

    @property
    def running(self) -> bool:
        return self.process.running

    def _java(self, main_class: str, *args: str) -> list[str]:
        home = cache_dir(self.version)
        return [
            # A hard cap on the JVM's life: a test run SIGKILLed after restarting the broker
            # from another thread (no PDEATHSIG there) leaves it running for at most this long.
            # `timeout` passes SIGTERM on to Java; kill() signals Java itself.
            "timeout",
            "--kill-after=30",
            str(int(self._max_lifetime_s)),
            "java",
            f"-Xmx{self._heap_mb}m",
            "-Xms64m",
            "-XX:+UseSerialGC",  # two shared cores: no parallel GC threads competing
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp",
            str(home / "libs" / "*"),
            main_class,
            *args,
        ]

    def _config(self, port: int) -> Path:
        # A new client port comes with new controller (and secured) ports; a restart keeps all.
        if port != self._config_for_port:
            self._controller_port = free_port()
            self._secured_port = free_port() if self.secured else 0
            self._config_for_port = port
        secured_listener = f",SASL_SSL://{_LOOPBACK}:{self._secured_port}" if self.secured else ""
        text = _SERVER_PROPERTIES.format(
            node_id=_NODE_ID,
            host=_LOOPBACK,
            port=port,
            controller_port=self._controller_port,
            secured_listener=secured_listener,
            log_dir=self.data_dir,
        )
        if self.secured:
            text += _SASL_SSL_PROPERTIES.format(keystore=self.secured.keystore)
        path = self.work_dir / "server.properties"
        path.write_text(text)
        return path

    def _argv(self, port: int) -> list[str]:
        return self._java("kafka.Kafka", str(self._config(port)))

    def _format(self, port: int) -> None:
        # Static quorum (controller.quorum.voters): the formatted log dir records no endpoint,
        # so it stays valid whichever ports a later start uses.
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "--cluster-id",
            _cluster_id(),
            "--config",
            str(self._config(port)),
            *(self.secured.scram_arguments() if self.secured else ()),
        )
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            # stderr only: argv holds the SCRAM passwords.
            raise EmbeddedRuntimeError(f"kafka-storage format failed:\n{result.stderr[-2000:]}")

    def start(self, port: int | None = None) -> Self:
        """Start (formatting the log dir the first time) and wait until Metadata answers.

        After the first start, `start()` reuses the same ports and log dir."""
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        resolve_kafka(self.version)
        port = port or self.process.port or free_port()
        if not (self.data_dir / "meta.properties").exists():
            self._format(port)
        began = time.monotonic()
        self.process.start(port)
        self.last_start_s = time.monotonic() - began
        return self

    def kill(self) -> None:
        """kill -9: no controlled shutdown, no flush; the log dir stays as the crash left it."""
        pid = self.pid
        if pid is None:
            raise EmbeddedRuntimeError("Apache Kafka is not running")
        os.kill(pid, signal.SIGKILL)
        self.process.stop()  # the wrapper exits with its child; this reaps it

    def restart(self) -> None:
        """SIGTERM (Kafka's controlled shutdown), then start on the same ports and log dir."""
        self.process.stop()
        self.start()

    def stop(self) -> None:
        """Stop the broker (idempotent); removes its files unless asked to keep them."""
        self.process.stop()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self._own_dir and not self._keep_files:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _main() -> None:
    """`python -m harness.apache_kafka`: resolve, then time a cold start and a restart."""
    began = time.monotonic()
    libs = resolve_kafka()
    print(f"resolved Kafka {KAFKA_VERSION} in {time.monotonic() - began:.1f} s: {libs}")
    began = time.monotonic()
    with ApacheKafka() as kafka:
        print(
            f"cold start to ready: {time.monotonic() - began:.1f} s with the storage format, "
            f"{kafka.last_start_s:.1f} s of it from JVM start ({kafka.bootstrap_servers})"
        )
        kafka.restart()
        print(f"SIGTERM + start on the same log dir: {kafka.last_start_s:.1f} s")


if __name__ == "__main__":
    _main()

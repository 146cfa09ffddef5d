"""agents.transport: wiring checks, and a real Faust worker draining a topic on embedded Tansu.

The worker runs in a subprocess (Faust owns its event loop, signals and threads) with a hard
timeout and is stopped by PID. The same harness gives the one-off measurement of the fixes:

    .venv/bin/python tests/agents/test_transport.py --backlog 100000 --rate 1000 --seconds 15

which runs the batched agent on Faust's own transport and on ours, alternately, and prints
events/s draining a backlog and the fill-to-agent latency at a steady produce rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer

from agents.settings import Settings
from agents.topics import ensure_topics_sync
from agents.transport import Transport, configure_app, faust_app_kwargs, faust_credentials
from harness.embedded import EmbeddedRuntime

# Low group timeouts: Tansu holds a new member's first JoinGroup for about half the session
# timeout (Faust's default 60 s session meant a ~30 s join), and neither the heartbeat nor
# the rebalance timeout changes that. 6 s is Kafka's default group.min.session.timeout.ms.
FAST_JOIN_ENV = {
    "REBATE_SESSION_TIMEOUT_S": "6",
    "REBATE_HEARTBEAT_INTERVAL_S": "1",
    "REBATE_REBALANCE_TIMEOUT_S": "6",
}

# A minimal Faust app: one batched agent (stream.take_events) that records every value it
# sees and, for values marked "L", the time since the producer stamped the record. A timer
# writes its counters to a JSON file (the latencies only once the parent asks for them, so
# serialising them cannot disturb the measurement); the parent stops it by PID.
WORKER = r"""
import json, os, sys, time
import faust
from agents.settings import Settings
from agents.transport import configure_app, faust_app_kwargs

mode, topic, out = sys.argv[1], sys.argv[2], sys.argv[3]
settings = Settings()
app = faust.App(
    settings.consumer_group, **faust_app_kwargs(settings),
    web_enabled=False, store="memory://", topic_disable_leader=True,
)
if mode == "ours":
    configure_app(app, settings)
source = app.topic(topic, key_serializer="raw", value_serializer="raw")
seen = set()
latencies = []
first_at = last_at = None


@app.agent(source)
async def drain(stream):
    global first_at, last_at
    async for events in stream.take_events(settings.batch_max, within=settings.batch_timeout_s):
        last_at = now = time.time()
        first_at = first_at or now
        for event in events:
            seen.add(event.value)
            if event.value.startswith(b"L"):
                latencies.append(now - event.message.timestamp)


@app.timer(0.2)
async def report():
    inner = getattr(getattr(app.consumer, "_thread", None), "_consumer", None)
    state = {
        "distinct": len(seen),
        "first_at": first_at,
        "last_at": last_at,
        "consumer": f"{type(app.consumer).__module__}.{type(app.consumer).__qualname__}",
        "fetch_max_wait_ms": getattr(getattr(inner, "_fetcher", None), "_fetch_max_wait_ms", None),
    }
    if os.path.exists(out + ".final"):
        state["latencies"] = latencies
    with open(out + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
"""


# --- harness ----------------------------------------------------------------------------------


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=value[-2:]) for value in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _produce_at_rate(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    # Small bursts every 10 ms approximate a steady rate without a task per message.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent = 0
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                await producer.send(topic, f"L{sent}".encode(), key=str(sent % 100).encode())
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


class WorkerProcess:
    """The WORKER app in a subprocess; its state is read from the file it writes."""

    def __init__(self, tmp: Path, bootstrap: str, topic: str, mode: str, env: dict[str, str]):
        self.out = tmp / f"worker-{mode}-{topic}.json"
        script = tmp / "faust_worker.py"
        script.write_text(WORKER)
        self.log_path = tmp / f"worker-{mode}-{topic}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), mode, topic, str(self.out), "worker"],
                env={
                    **os.environ,
                    **env,
                    "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "REBATE_CONSUMER_GROUP": f"transport-test-{uuid.uuid4().hex[:8]}",
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started_at = time.time()

    def state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self.out.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"distinct": 0, "latencies": [], "first_at": None}
        return state

    def wait_for(self, distinct: int, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}: {self.log_tail()}")
            state = self.state()
            if state["distinct"] >= distinct:
                return state
            time.sleep(0.1)
        raise AssertionError(
            f"worker saw {self.state()['distinct']}/{distinct} after {timeout_s} s: "
            f"{self.log_tail()}"
        )

    def final_state(self, timeout_s: float = 30) -> dict[str, Any]:
        """State including the latencies, which the worker writes only on request."""
        Path(f"{self.out}.final").touch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state()
            if "latencies" in state:
                return state
            time.sleep(0.1)
        raise AssertionError(f"worker did not report latencies: {self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextmanager
def running_worker(
    tmp: Path, bootstrap: str, topic: str, mode: str, env: dict[str, str]
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(tmp, bootstrap, topic, mode, env)
    try:
        yield worker
    finally:
        worker.stop()


# --- tests ------------------------------------------------------------------------------------


def test_configure_app_installs_our_transport_with_the_settings() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=7)
    app = faust.App("transport-wiring", **faust_app_kwargs(settings), web_enabled=False)
    configure_app(app, settings)
    assert isinstance(app.transport, Transport)
    assert isinstance(app.producer_transport, Transport)
    assert app.transport.settings.fetch_max_wait_ms == 7
    assert [str(u) for u in app.conf.broker] == ["kafka://127.0.0.1:1"]


def test_configure_app_refuses_an_app_whose_transport_exists() -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    app = faust.App("transport-late", **faust_app_kwargs(settings), web_enabled=False)
    app.topic("declared-too-early")
    _ = app.topics  # declaring agents/topics builds the conductor, hence the transport
    with pytest.raises(RuntimeError, match="before any topic"):
        configure_app(app, settings)


def test_faust_credentials_follow_the_security_settings() -> None:
    assert faust_credentials(Settings()) is None
    sasl = faust_credentials(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="engine",
            kafka_sasl_password="s3cret",
        )
    )
    assert isinstance(sasl, faust.SASLCredentials)
    assert sasl.protocol.value == "SASL_SSL"
    assert sasl.mechanism.value == "SCRAM-SHA-512"
    assert isinstance(
        faust_credentials(Settings(kafka_security_protocol="SSL")), faust.SSLCredentials
    )


def test_broker_url_scheme_resolves_through_an_entry_point(tmp_path: Path) -> None:
    # What `[project.entry-points."faust.transports"] rebate = ...` in pyproject would install.
    dist = tmp_path / "rebate_transport_probe-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rebate-transport-probe\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[faust.transports]\nrebate = agents.transport:Transport\n"
    )
    code = (
        "import faust; app = faust.App('probe', broker='rebate://127.0.0.1:1', web_enabled=False);"
        "t = app.transport; print(type(t).__module__, type(t).__name__, t.settings.fetch_max_wait_ms)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "REBATE_FETCH_MAX_WAIT_MS": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["agents.transport", "Transport", "3"], done.stderr


@pytest.mark.slow
def test_faust_worker_on_our_transport_consumes_every_message(
    tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    n = 20_000
    with EmbeddedRuntime(redis=False) as runtime:
        topic = unique_name("transport")
        ensure_topics_sync(runtime.bootstrap_servers, {topic: 4})
        asyncio.run(_produce(runtime.bootstrap_servers, topic, [str(i).encode() for i in range(n)]))
        with running_worker(tmp_path, runtime.bootstrap_servers, topic, "ours", FAST_JOIN_ENV) as w:
            state = w.wait_for(n, timeout_s=120)
    # Distinct values 0..n-1 and exactly n of them: nothing lost, nothing foreign.
    assert state["distinct"] == n
    assert state["consumer"] == "agents.transport.Consumer"
    assert state["fetch_max_wait_ms"] == Settings().fetch_max_wait_ms


# --- one-off measurement (not collected by pytest) ---------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure_once(
    tmp: Path, bootstrap: str, mode: str, backlog: int, rate: int, seconds: float
) -> dict[str, float]:
    topic = f"measure-{mode}-{uuid.uuid4().hex[:6]}"
    ensure_topics_sync(bootstrap, {topic: 4})
    asyncio.run(_produce(bootstrap, topic, [f"B{i}".encode() for i in range(backlog)]))
    with running_worker(tmp, bootstrap, topic, mode, FAST_JOIN_ENV) as worker:
        drained = worker.wait_for(backlog, timeout_s=300)
        # From the first batch to the last: the join is reported on its own.
        throughput = backlog / (drained["last_at"] - drained["first_at"])
        sent = asyncio.run(_produce_at_rate(bootstrap, topic, rate, seconds))
        worker.wait_for(backlog + sent, timeout_s=120)
        state = worker.final_state()
    latencies_ms = [1000 * x for x in state["latencies"]]
    return {
        "join_s": drained["first_at"] - worker.started_at,
        "events_per_s": throughput,
        "p50_ms": statistics.median(latencies_ms),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "max_ms": max(latencies_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1_000, help="messages/s for the latency phase")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"faust": [], "ours": []}
    with EmbeddedRuntime(redis=False) as runtime:
        tmp = runtime.log_dir
        for run in range(args.runs):
            for mode in ("faust", "ours"):  # alternate, so drift hits both
                result = _measure_once(
                    tmp, runtime.bootstrap_servers, mode, args.backlog, args.rate, args.seconds
                )
                results[mode].append(result)
                print(f"run {run} {mode:5}", {k: round(v, 1) for k, v in result.items()})
    for mode, rows in results.items():
        summary = {k: round(statistics.median(r[k] for r in rows), 1) for k in rows[0]}
        print(f"median {mode:5}", summary)


if __name__ == "__main__":
    main()

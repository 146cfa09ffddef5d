"""A worker's output is one JSON object per line (README, Operations: Secured links) and holds
no secret and no personal data: not the Redis password of its URL, not the client or IB
names and e-mail addresses the seed uses as ids, also while Redis stalls and wallet commands
name those clients.

A worker runs the scenario once per log level (INFO, the default, and DEBUG, so every library's
chatter is checked too), stdout and stderr captured apart; each test reads those logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from agents.settings import Settings
from engine.seed import parse_seed
from harness.embedded import ManagedProcess, answers_ping
from harness.kafka_replay import Collected, publish_and_collect
from harness.workers import WorkerProcess, settings_env
from tests.factories import fill_line
from tests.integration._helpers import load_seed, read_topic, server, wait_ready
from tests.integration.fixtures import deploy

REDIS_SERVER = shutil.which("redis-server")
PASSWORD = f"url-pw-{uuid.uuid4().hex}"

# Brokers' CRMs do use e-mail addresses and names as client/IB ids: none may reach a log.
PERSONAL = ("jane.doe@example.com", "Ivan Petrov", "anna.partner@example.org", "Boris Introducer")
SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
plans:
  - id: std
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}
    upline_override_pct: ["20"]
ibs:
  - {id: "anna.partner@example.org", plan: std, rebate_pct: "0"}
  - {id: "Boris Introducer", plan: std, parent: "anna.partner@example.org", rebate_pct: "25"}
clients:
  - {id: "jane.doe@example.com", ib: "Boris Introducer", verified: true}
  - {id: "Ivan Petrov", ib: "Boris Introducer", verified: true}
accounts:
  - {login: 700001, client: "jane.doe@example.com", type: standard}
  - {login: 700002, client: "Ivan Petrov", type: standard}
wallets:
  - {client: "jane.doe@example.com", reward_jm: "50.00"}
  - {client: "Ivan Petrov", reward_jm: "5.00"}
"""

_REDIS_SECURITY = (
    "redis_username",
    "redis_password",
    "redis_ssl_cafile",
    "redis_ssl_certfile",
    "redis_ssl_keyfile",
)

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server on PATH")


def _fills(n: int, first_deal: int) -> list[bytes]:
    return [
        fill_line(
            login=700001 + i % 2,
            deal=first_deal + i,
            position=first_deal + i,
            open_time=f"2024-03-01T10:{i % 50:02d}:00Z",
            close_time=f"2024-03-01T11:{i % 50:02d}:00Z",
        )
        for i in range(n)
    ]


def _commands() -> list[dict[str, object]]:
    base = {"schema": "wallet-command.v1", "command": "allocate_jm"}
    return [
        {**base, "request_id": "r-ok", "client": "jane.doe@example.com", "login": 700001,
         "amount": "10.00"},
        # Refused: more than the wallet holds; the answer names the client, the log must not.
        {**base, "request_id": "r-poor", "client": "Ivan Petrov", "login": 700002,
         "amount": "500.00"},
    ]  # fmt: skip


def _malformed_command() -> dict[str, object]:
    # A wallet service sending its client record instead of the id: schema-invalid, logged.
    return {
        "schema": "wallet-command.v1",
        "command": "allocate_jm",
        "request_id": "r-bad",
        "client": {"name": "Ivan Petrov", "email": "jane.doe@example.com"},
        "login": 700002,
        "amount": "1.00",
    }


class _SplitWorker(WorkerProcess):
    """`rebate-engine worker` with stdout and stderr in separate files (WorkerProcess merges
    them, as `docker logs` does)."""

    @property
    def stdout_path(self) -> Path:
        return self.log_path.with_suffix(".stdout")

    def start(self) -> _SplitWorker:
        env = {
            **os.environ,
            **settings_env(self.settings, web_port=self.web_port, web_host="127.0.0.1"),
        }
        with self.log_path.open("ab") as err, self.stdout_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "worker"],
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self


@dataclass(frozen=True)
class Run:
    level: str
    stderr: str
    stdout: str
    collected: Collected
    events: list[bytes]

    def lines(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.stderr.splitlines()]


def _ping(port: int) -> bool:
    return answers_ping(redis.Redis(port=port, password=PASSWORD, socket_timeout=0.5))


async def _scenario(settings: Settings, rdb: ManagedProcess, log_dir: Path, level: str) -> Run:
    with deploy(settings, "logging", log_dir, own_redis_db=False, topic_partitions=2) as dep:
        await load_seed(dep.settings, parse_seed(SEED, "personal-seed.yaml"))
        worker = _SplitWorker(
            dep.settings.model_copy(update={"log_level": level}), log_dir / f"worker-{level}.log"
        ).start()
        dep.workers.append(worker)  # stopped by PID at the end, whatever happens
        await asyncio.to_thread(wait_ready, worker)
        collected = await publish_and_collect(dep.settings, _fills(20, 5000), timeout_s=60)
        producer = AIOKafkaProducer(bootstrap_servers=dep.settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            for command in [*_commands(), _malformed_command()]:
                await producer.send_and_wait(
                    dep.settings.topic_wallet_commands, orjson.dumps(command), key=b"700001"
                )
        finally:
            await producer.stop()
        events = await read_topic(dep.settings, dep.settings.topic_wallet_events, at_least=2)
        # Redis stalls while fills arrive: the pause/retry paths log, with the URL in scope.
        rdb.pause()
        try:
            stalled = asyncio.create_task(
                publish_and_collect(dep.settings, _fills(10, 6000), timeout_s=60)
            )
            await asyncio.sleep(3)
        finally:
            rdb.resume()
        collected.credits += (await stalled).credits
        worker.stop(signal.SIGTERM)
    return Run(
        level,
        worker.log_path.read_text(errors="replace"),
        worker.stdout_path.read_text(errors="replace"),
        collected,
        events,
    )


@pytest.fixture(scope="module", params=["INFO", "DEBUG"])
def run(
    request: pytest.FixtureRequest, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    level: str = request.param
    tmp = tmp_path_factory.mktemp(f"logging-{level}")
    argv = [str(REDIS_SERVER), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with server(
        "redis-requirepass",
        lambda port: [*argv, "--dir", str(tmp), "--requirepass", PASSWORD, "--port", str(port)],
        _ping,
        tmp / "redis.log",
    ) as rdb:
        # The password only in the URL, as many deployments write it.
        own = settings.model_copy(
            update={
                "redis_url": f"redis://:{PASSWORD}@127.0.0.1:{rdb.port}/0",
                "redis_socket_timeout_s": 0.5,
                **dict.fromkeys(_REDIS_SECURITY),  # nothing inherited from the environment
            }
        )
        yield asyncio.run(asyncio.wait_for(_scenario(own, rdb, tmp, level), 100))


def _invalid_command_warning(entry: dict[str, str]) -> bool:
    return entry["logger"] == "rebate.wallet" and "invalid wallet command" in entry["msg"]


@pytest.mark.timeout(120)
def test_the_scenario_did_what_it_should(run: Run) -> None:
    # Otherwise the checks below would pass on a worker that never touched the data.
    assert len(run.collected.credits) > 20
    answers = {orjson.loads(e)["request_id"]: orjson.loads(e)["event"] for e in run.events}
    assert set(answers) == {"r-ok", "r-poor"}
    levels = {entry["level"] for entry in run.lines()}
    assert "WARNING" in levels  # the Redis stall and the malformed command were noticed
    assert ("DEBUG" in levels) == (run.level == "DEBUG")


def test_stderr_is_one_json_object_per_line(run: Run) -> None:
    lines = run.stderr.splitlines()
    assert len(lines) > 30
    for number, line in enumerate(lines, 1):
        entry = json.loads(line)  # raises on the first line that is not JSON
        assert isinstance(entry, dict), number
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), (number, line)
        assert entry["ts"].endswith("+00:00"), (number, line)


def test_stdout_holds_nothing_but_json_lines(run: Run) -> None:
    # `docker logs` and most log shippers merge stdout into stderr.
    for line in run.stdout.splitlines():
        assert isinstance(json.loads(line), dict), repr(line)


def test_the_redis_password_never_appears(run: Run) -> None:
    assert PASSWORD not in run.stderr
    assert PASSWORD not in run.stdout


def test_no_client_or_ib_name_or_email_appears(run: Run) -> None:
    entries = [e for e in run.lines() if not _invalid_command_warning(e)]
    text = "\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + run.stdout
    assert not [p for p in PERSONAL if p in text]
    assert "@example." not in text


def test_an_invalid_wallet_command_is_logged_without_its_contents(run: Run) -> None:
    warnings = [e["msg"] for e in run.lines() if _invalid_command_warning(e)]
    assert warnings, "the malformed command was not reported"
    assert not [p for p in PERSONAL if any(p in w for w in warnings)], warnings

"""Shared pieces of the integration tests that run real workers.

A test module registers a fixture by importing it: `from tests.integration.fixtures import
deployment_fixture  # noqa: F401` gives it the `deployment` fixture (and
`module_deployment_fixture` a module-scoped `module_deployment`): an engine deployment on the
session's broker and Redis with its own topics, consumer group and Redis database (flushed
before and after), whose worker subprocesses the test starts and the fixture stops by PID.

The helpers read topics back from offset 0 (never from end offsets: Tansu's ListOffsets can
trail the log end), scrape /metrics, and build the offline replay every Kafka result is
compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
import redis
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from agents.settings import Settings
from agents.storage.store import RedisStore
from agents.topics import delete_topics_sync, ensure_topics_sync, partitions, read_topic
from engine.ledger import Ledger
from engine.replay import ReplayResult, replay_lines
from engine.rules import Change
from engine.seed import Seed, parse_seed
from harness.workers import WorkerProcess

__all__ = [
    "ROOT",
    "STREAM_SEED",
    "Deployment",
    "Scrape",
    "background",
    "credit_ids",
    "deploy",
    "deployment_fixture",
    "headers_of",
    "jsonl",
    "module_deployment_fixture",
    "offline_replay",
    "read_topic",
    "stream_seed",
    "totals",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]

# Database 0 is left to tests that use the session's Redis directly; ours cycle through 1..15.
# Tests run one after the other, and each flushes its database before and after.
_REDIS_DBS = itertools.cycle(range(1, 16))

# A book for hand-made and generated fills: every login trades on one server (as in MT4/MT5),
# so one partition owns each account. Logins 1000-1016 cover the credit kinds; 2001/2002 are
# attached to IBs that the dead-letter tests break at lookup time (IB cycle, unknown plan).
STREAM_SEED = """
effective_from: "2019-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
symbols:
  suffixes: [".m", "-std", "micro", ".raw"]
  groups:
    forex: [EURUSD, GBPUSD, USDJPY, EURGBP]
    metals: [XAUUSD, XAGUSD]
    indices: [US30, NAS100, GER40]
plans:
  - id: house
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "4"}
      - {account_types: ["*"], symbols: [metals], per_lot_usd: "12"}
      - {account_types: [standard_cent], symbols: ["*"], per_lot_usd: "1"}
      - {account_types: [raw_spread], symbols: ["*"], commission_pct: "30", max_usd_per_lot: "6"}
      - {account_types: [pro], symbols: [forex], spread_pct: "40", max_usd_per_lot: "10"}
    upline_override_pct: ["20", "10"]
    min_hold_seconds: 60
    min_points: 5
  - id: partner
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "7"}
    upline_override_pct: ["15"]
ibs:
  - {id: IB-TOP, plan: partner, rebate_pct: "0"}
  - {id: IB-MID, plan: house, parent: IB-TOP, rebate_pct: "10"}
  - {id: IB-LOW, plan: house, parent: IB-MID, rebate_pct: "25", client: C-LOWIB}
  - {id: IB-CYC-A, plan: house, rebate_pct: "0"}
  - {id: IB-CYC-B, plan: house, parent: IB-CYC-A, rebate_pct: "20"}
  - {id: IB-NOPLAN, plan: partner, rebate_pct: "20"}
clients:
  - {id: C-1, ib: IB-LOW, verified: true}
  - {id: C-2, ib: IB-LOW, verified: true, rebate_pct: "50"}
  - {id: C-3, ib: IB-MID, verified: false}
  - {id: C-4, verified: true}
  - {id: C-LOWIB, ib: IB-LOW, verified: true}
  - {id: C-CYC, ib: IB-CYC-B, verified: true}
  - {id: C-NOPLAN, ib: IB-NOPLAN, verified: true}
accounts:
  - {login: 1000, client: C-1, type: standard}
  - {login: 1001, client: C-1, type: standard_cent}
  - {login: 1002, client: C-1, type: pro}
  - {login: 1003, client: C-1, type: raw_spread}
  - {login: 1004, client: C-2, type: standard}
  - {login: 1005, client: C-2, type: pro}
  - {login: 1006, client: C-2, type: raw_spread}
  - {login: 1007, client: C-2, type: standard_cent}
  - {login: 1008, client: C-3, type: standard}
  - {login: 1009, client: C-3, type: raw_spread}
  - {login: 1010, client: C-3, type: pro}
  - {login: 1011, client: C-4, type: standard}
  - {login: 1012, client: C-4, type: raw_spread}
  - {login: 1013, client: C-LOWIB, type: standard}
  - {login: 1014, client: C-LOWIB, type: pro}
  - {login: 1015, client: C-2, type: standard}
  - {login: 1016, client: C-3, type: standard, live: false}
  - {login: 2001, client: C-CYC, type: standard}
  - {login: 2002, client: C-NOPLAN, type: standard}
wallets:
  - {client: C-1, reward_jm: "100.00"}
  - {login: 1000, jm_allocated: "500.00", allocated_at: "2019-01-01T00:00:00Z"}
  - {login: 1004, jm_allocated: "40.00", allocated_at: "2019-01-01T00:00:00Z"}
  - {login: 1005, jm_allocated: "75.00", allocated_at: "2024-01-01T00:00:00Z"}
bonuses:
  - {login: 1001, bonus_id: B-1, amount_usd: "100", granted_at: "2019-01-01T00:00:00Z"}
  - {login: 1004, bonus_id: B-2, amount_usd: "2000", granted_at: "2022-01-01T00:00:00Z"}
changes:
  - {at: "2024-06-01T00:00:00Z", client: C-1, rebate_pct: "30"}
  - {at: "2026-01-01T00:00:00Z", client: C-2, rebate_status: suspended}
  - {at: "2027-01-01T00:00:00Z", ib: IB-MID, plan: partner}
"""


def stream_seed() -> Seed:
    return parse_seed(STREAM_SEED, "stream-seed.yaml")


# --- the deployment ----------------------------------------------------------------------------


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@dataclass
class Deployment:
    """One isolated engine deployment: its settings, Redis database and worker processes."""

    settings: Settings
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, *, wait: bool = True, **update: Any) -> WorkerProcess:
        """Start a worker (stopped by PID at the end); `update` overrides settings for it alone."""
        settings = self.settings.model_copy(update=update) if update else self.settings
        log = self.log_dir / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(settings, log).start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGTERM, timeout_s=20)  # by PID; SIGKILL if it hangs

    def redis(self) -> Redis:
        return Redis.from_url(self.settings.redis_url or "", **self.settings.redis_client_kwargs())

    async def load_seed(self, seed: Seed, changes: Sequence[Change] = ()) -> None:
        client = self.redis()
        try:
            store = RedisStore(client)
            await store.load_seed(seed)
            if changes:
                await store.append_changes(changes)
        finally:
            await client.aclose()

    def metrics(self, worker: WorkerProcess | None = None) -> Scrape:
        return Scrape.of((worker or self.workers[-1]).metrics_text())


def _flush(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url or "", **settings.redis_client_kwargs())
    try:
        client.flushdb()
    finally:
        client.close()


@contextlib.contextmanager
def deploy(
    settings: Settings,
    name: str,
    log_dir: Path,
    *,
    redis_db: int | None = None,
    own_redis_db: bool = True,
    flush: bool = True,
    **update: Any,
) -> Iterator[Deployment]:
    """An engine deployment no other test sees; workers are started by the test.

    Its topics carry a unique suffix, its consumer group is new, its Redis database (`redis_db`,
    else the next of 1..15; with `own_redis_db=False` the URL's own, for a private Redis the
    test started itself) is flushed before and after unless `flush=False`. `update` overrides
    settings. On exit every worker it started is SIGTERMed (SIGKILL after 20 s) by PID, then
    its topics are deleted (best effort: the broker is shared by the whole session).
    """
    assert settings.redis_url is not None
    tag = f"{re.sub(r'[^A-Za-z0-9._-]', '-', name)[:40]}-{uuid.uuid4().hex[:8]}"
    own: dict[str, Any] = {
        f"topic_{topic}": f"{default}.{tag}" for topic, default in settings.topics.items()
    }
    own["consumer_group"] = f"rebate-{tag}"
    if own_redis_db:
        db = next(_REDIS_DBS) if redis_db is None else redis_db
        own["redis_url"] = _with_db(settings.redis_url, db)
    own.update(update)
    mine = settings.model_copy(update=own)
    ensure_topics_sync(mine, partitions(mine))
    if flush:
        _flush(mine)
    deployed = Deployment(mine, log_dir)
    try:
        yield deployed
    finally:
        deployed.stop_workers()
        if flush:
            with contextlib.suppress(Exception):
                _flush(mine)
        with contextlib.suppress(Exception):
            delete_topics_sync(mine, mine.topics.values())


@pytest.fixture(name="deployment")
def deployment_fixture(
    settings: Settings, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Deployment]:
    """`deploy` for one test."""
    with deploy(settings, request.node.name, tmp_path) as deployed:
        yield deployed


@pytest.fixture(name="module_deployment", scope="module")
def module_deployment_fixture(
    settings: Settings, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """`deploy` shared by the tests of a module (they must not depend on each other's data)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    with deploy(settings, name, tmp_path_factory.mktemp(name)) as deployed:
        yield deployed


# --- reading what the workers wrote ------------------------------------------------------------


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers or ()}


@dataclass(frozen=True)
class Scrape:
    """One /metrics page: `value(name, **labels)` and `total(name, **some_labels)`."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    text: str

    @classmethod
    def of(cls, text: str) -> Scrape:
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return cls(samples, text)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def total(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def by(self, name: str, label: str) -> dict[str, float]:
        return {
            dict(ls)[label]: v
            for (n, ls), v in self.samples.items()
            if n == name and label in dict(ls)
        }


async def wait_for(predicate: Any, timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """Poll a sync predicate in a thread until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await asyncio.to_thread(predicate)
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not seen within {timeout_s} s")
        await asyncio.sleep(every_s)


# --- the reference -----------------------------------------------------------------------------


def offline_replay(
    seed: Seed, lines: Iterable[bytes], changes: Sequence[Change] = ()
) -> tuple[list[bytes], ReplayResult]:
    """Credits of the offline replay (engine only, no broker or Redis), one JSON each."""
    ledger = Ledger.from_seed(seed)
    if changes:
        ledger.book.extend(changes)
    written: list[bytes] = []
    result = replay_lines(
        (("stream", n, line) for n, line in enumerate(lines, start=1)), ledger, written.append
    )
    return [w.rstrip(b"\n") for w in written], result


def totals(credits: Iterable[bytes]) -> dict[str, Decimal]:
    """Sums to the cent per kind/currency and per beneficiary: what a back office reconciles."""
    sums: dict[str, Decimal] = {}
    for raw in credits:
        credit = orjson.loads(raw)
        amount = Decimal(credit["amount"])
        beneficiary = credit["beneficiary"]
        for key in (
            f"kind {credit['kind']} {credit['currency']}",
            f"{beneficiary['type']} {beneficiary['id']} {credit['currency']}",
        ):
            sums[key] = sums.get(key, Decimal(0)) + amount
    return sums


def credit_ids(credits: Iterable[bytes]) -> list[str]:
    return [orjson.loads(c)["credit_id"] for c in credits]


def jsonl(objects: Iterable[Any]) -> list[bytes]:
    return [json.dumps(o, separators=(",", ":")).encode() for o in objects]


@contextlib.asynccontextmanager
async def background(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    """Run `coro` as a task for the block; cancelled (and awaited) if the block fails."""
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

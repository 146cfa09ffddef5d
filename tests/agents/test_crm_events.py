"""The crm-events.v1 consumer against a real Redis: events into the rules log, once each."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
from redis.asyncio import Redis

from agents.crm import CrmEventHandler
from agents.messages import Outgoing, Record
from agents.metrics import Metrics
from agents.storage import keys
from agents.storage.store import RedisStore
from engine.changes import add_client
from engine.crm import apply_event_lines
from engine.rules import RuleBook
from engine.seed import parse_seed
from tests.crm_factories import BASE_SEED, SCENARIO_EVENTS, crm_event, crm_line

DLQ = "crm-events.v1.dlq"
# The scenario's events are effective 2024-03-02T10:00 .. 2024-03-09: 182 h or less before NOW.
NOW = datetime.fromisoformat("2024-03-10T00:00:00Z")
WINDOW_HOURS = 240


def records(*lines: bytes) -> list[Record]:
    return [Record(line, "crm-events.v1", 0, offset) for offset, line in enumerate(lines)]


async def seeded(redis: Redis) -> tuple[RedisStore, CrmEventHandler, Metrics]:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(BASE_SEED, "base.yaml"))
    metrics = Metrics()
    return store, CrmEventHandler(store, metrics, DLQ, WINDOW_HOURS, lambda: NOW), metrics


def header(dead: Outgoing, name: str) -> str:
    return dict(dead.headers)[name].decode()


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_total", labels)
    return value or 0.0


async def test_the_events_make_the_rules_the_offline_replay_makes(redis: Redis) -> None:
    store, handler, metrics = await seeded(redis)
    lines = [orjson.dumps(e) for e in SCENARIO_EVENTS]
    assert await handler.handle(records(*lines)) == []

    offline = RuleBook(parse_seed(BASE_SEED, "base.yaml").changes)
    assert (
        apply_event_lines([("e", n, line) for n, line in enumerate(lines)], offline).problems == []
    )
    live = RuleBook(await store.rule_changes())
    logins = (900001, 900077, 900088, 900099)
    for day in range(2, 11):
        at = datetime.fromisoformat(f"2024-03-{day:02d}T12:00:00Z")
        assert [live.resolve(login, at) for login in logins] == [
            offline.resolve(login, at) for login in logins
        ], at
    # 12 events, one per type at least; C-77's ref code 77777 is no IB's: a direct client.
    assert sum(counted(metrics, "rebate_crm_events", type=t, outcome="applied")
               for t in {e["type"] for e in SCENARIO_EVENTS}) == 12  # fmt: skip
    assert counted(metrics, "rebate_direct_clients", reason="unknown_ref_code") == 1


async def test_a_redelivered_event_changes_nothing(redis: Redis) -> None:
    _, handler, metrics = await seeded(redis)
    line = crm_line("client_registered", client="C-50", ref_code="32071", verified=True)
    assert await handler.handle(records(line)) == []
    log, version = await redis.llen(keys.RULES_LOG), await redis.get(keys.RULES_VERSION)

    # Checked again, its own change would make it `already_exists`: it must be a duplicate.
    assert await handler.handle(records(line, line)) == []
    assert (await redis.llen(keys.RULES_LOG), await redis.get(keys.RULES_VERSION)) == (
        log,
        version,
    )
    assert counted(metrics, "rebate_crm_events", type="client_registered", outcome="applied") == 1
    assert counted(metrics, "rebate_crm_events", type="client_registered", outcome="duplicate") == 2


async def test_an_event_checked_on_old_rules_is_checked_again(redis: Redis) -> None:
    # An admin command appends a change between the handler's fold and its write: the script
    # refuses the stale write, the handler refolds, and the event is checked on the new rules.
    store, handler, _ = await seeded(redis)
    await store.refresh_rules()
    at = datetime.fromisoformat("2024-03-01T00:00:00Z")
    await RedisStore(redis).append_changes([add_client(store.book, at, "C-51", verified=True)])
    line = crm_line("account_opened", login=900051, client="C-51", account_type="standard",
                    currency="USD", live=True)  # fmt: skip
    assert await handler.handle(records(line)) == []
    attribution = RuleBook(await store.rule_changes()).resolve(900051, NOW)
    assert attribution is not None and attribution.client.id == "C-51"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b'{"schema": "crm-event.v1", "type": ', "malformed_json", id="not JSON"),
        pytest.param(crm_line("client_registered", verified=True), "schema",
                     id="missing client"),
        pytest.param(orjson.dumps({k: v for k, v in crm_event("client_verified", client="C-1")
                                   .items() if k != "event_id"}), "schema", id="missing event_id"),
        pytest.param(crm_line("client_deleted", client="C-1"), "unknown_type", id="unknown type"),
        pytest.param(crm_line("client_moved", client="C-1", ib="IB-404"), "unknown_ib",
                     id="unknown IB"),
        pytest.param(crm_line("ib_changed", ib="IB-M", parent_code="32071"), "cycle",
                     id="a cycle"),
        pytest.param(crm_line("client_registered", client="C-40", ref_code="40400",
                              verified=True), "inactive_ib", id="ref code of an inactive IB"),
        # 10 days (240 h) and 1 s before NOW: past the window.
        pytest.param(crm_line("client_verified", "2024-02-28T23:59:59Z", client="C-1"),
                     "too_late", id="later than the correction window"),
    ],
)  # fmt: skip
async def test_a_bad_event_is_dead_lettered_with_its_reason_and_changes_nothing(
    redis: Redis, line: bytes, reason: str
) -> None:
    _, handler, metrics = await seeded(redis)
    version = await redis.get(keys.RULES_VERSION)
    good = crm_line("client_verified", "2024-03-09T00:00:00Z", client="C-1")
    [dead] = await handler.handle(records(line, good))
    assert (dead.topic, dead.value) == (DLQ, line)
    assert header(dead, "error") == reason
    assert (header(dead, "original_topic"), header(dead, "original_offset")) == (
        "crm-events.v1",
        "0",
    )
    assert counted(metrics, "rebate_crm_dead_letters", reason=reason) == 1
    # Nothing stops: the good event after it is applied (one version step, its own).
    assert int(await redis.get(keys.RULES_VERSION) or 0) == int(version or 0) + 1


async def test_a_change_that_a_later_one_would_contradict_is_a_revived_rebate(
    redis: Redis,
) -> None:
    # C-1's rebate is resumed from 2024-03-05: a cancellation effective before it would make
    # that resume revive a cancelled rebate.
    store, handler, _ = await seeded(redis)
    resume = crm_line("rebate_set", "2024-03-05T00:00:00Z", client="C-1", status="active")
    cancel = crm_line("rebate_set", "2024-03-04T00:00:00Z", client="C-1", status="cancelled")
    [dead] = await handler.handle(records(resume, cancel))
    assert header(dead, "error") == "revived_rebate"
    client = RuleBook(await store.rule_changes()).get("client", "C-1", NOW)
    assert client is not None and client.rebate_status == "active"

"""SPEC 3 r2 through Kafka: the back office's events arrive after the fills they concern; the
fills wait parked, are settled when their accounts arrive, and the credits equal the offline
replay's (which applies the events by `at`), with no credit id twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from aiokafka import AIOKafkaProducer

from engine.crm import apply_event_lines
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import parse_seed
from harness.kafka_replay import fill_key
from tests.crm_factories import BASE_SEED, crm_line
from tests.factories import fill_line, lots
from tests.integration.fixtures import (
    Deployment,
    credit_ids,
    deployment_fixture,  # noqa: F401 (registers it)
    read_topic,
    totals,
    wait_for,
)

# Recent times: a back-office change older than correction_window_hours is dead-lettered.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def _z(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


# IB-9 (gold, 20 USD/lot, 10% rebate) registers under IB-1's code 32071; C-88 registers through
# 32071 (IB-1: std 15 USD/lot, 20% rebate, IB-M above takes 10% of the gross), C-99 through 55555.
EVENTS = [
    crm_line("ib_registered", _z(0), ib="IB-9", partner_code="55555", parent_code="32071",
             plan="gold", rebate_pct="10"),
    crm_line("client_registered", _z(1), client="C-88", ref_code="32071", verified=True),
    crm_line("account_opened", _z(2), login=900088, client="C-88", account_type="standard",
             currency="USD", live=True),
    crm_line("client_registered", _z(3), client="C-99", ref_code="55555", verified=True),
    crm_line("account_opened", _z(4), login=900099, client="C-99", account_type="standard",
             currency="USD", live=True),
]  # fmt: skip


def _fill(deal: int, login: int, n_lots: int, close_minute: int) -> bytes:
    return fill_line(deal=deal, position=deal, login=login, volume=lots(n_lots),
                     open_time=_z(close_minute - 5), close_time=_z(close_minute))  # fmt: skip


FILLS = [
    _fill(1, 900088, 2, 40),  # 30.00 gross: C-88 6.00, IB-1 24.00, IB-M 3.00
    _fill(2, 900088, 1, 30),  # 15.00 gross: C-88 3.00, IB-1 12.00, IB-M 1.50 (closed first)
    _fill(3, 900099, 1, 35),  # 20.00 gross: C-99 2.00, IB-9 18.00, IB-1 (std) 10% = 2.00
    _fill(4, 900001, 2, 20),  # known from the seed: 30.00 gross: C-1 6.00, IB-1 24.00, IB-M 3.00
]
BY_HAND = {
    "ib IB-1 USD": Decimal("62.00"),  # 24 + 12 + 24 commission, 2 override under IB-9
    "ib IB-M USD": Decimal("7.50"),  # 3 + 1.50 + 3
    "ib IB-9 USD": Decimal("18.00"),
    "client C-88 USD": Decimal("9.00"),
    "client C-99 USD": Decimal("2.00"),
    "client C-1 USD": Decimal("6.00"),
}


def _offline() -> list[bytes]:
    ledger = Ledger.from_seed(parse_seed(BASE_SEED, "base.yaml"))
    applied = apply_event_lines([("e", n, e) for n, e in enumerate(EVENTS)], ledger.book)
    assert applied.problems == []
    out: list[bytes] = []
    replay_lines([("f", n, f) for n, f in enumerate(FILLS)], ledger, out.append)
    return [line.rstrip(b"\n") for line in out]


async def _publish(
    deployment: Deployment, topic: str, messages: Sequence[tuple[bytes, bytes]]
) -> None:
    s = deployment.settings
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap_servers, **s.aiokafka_security_kwargs()
    )
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_accounts_arriving_after_their_fills_give_the_offline_replays_credits(
    deployment: Deployment,
) -> None:
    await deployment.load_seed(parse_seed(BASE_SEED, "base.yaml"))
    worker = deployment.start_worker(park_check_s=0.2)
    s = deployment.settings

    await _publish(deployment, s.topic_fills, [(fill_key(f), f) for f in FILLS])
    await wait_for(
        lambda: deployment.metrics(worker).value("rebate_parked_fills") == 3,
        60,
        "the three fills of unknown logins parked",
    )
    await _publish(
        deployment,
        s.topic_crm_events,
        [(orjson.loads(e).get("client", "IB-9").encode(), e) for e in EVENTS],
    )
    credits = [r.value for r in await read_topic(s, s.topic_credits, at_least=12, quiet_s=2.0)]

    expected = _offline()
    assert len(expected) == 12
    assert sorted(credits) == sorted(expected)
    assert len(set(credit_ids(credits))) == len(credits)
    by_beneficiary = {k: v for k, v in totals(credits).items() if not k.startswith("kind ")}
    assert by_beneficiary == BY_HAND
    await wait_for(
        lambda: deployment.metrics(worker).value("rebate_parked_fills") == 0,
        30,
        "the park emptied",
    )
    scrape = deployment.metrics(worker)
    assert scrape.value("rebate_parked_fills_released_total", outcome="settled") == 3
    assert scrape.total("rebate_crm_events_total", outcome="applied") == 5


async def test_a_fill_whose_account_never_came_is_dead_lettered_then_credited_once(
    deployment: Deployment,
) -> None:
    # park_hours 0.001 = 3.6 s. The fill of 900088 (C-88 not registered yet) waits, goes to
    # fills.v1.dlq as `unattributed`; once the account exists, the dead letter re-published
    # as it is earns its credits once (deal 2 above: C-88 3.00, IB-1 12.00, IB-M 1.50).
    await deployment.load_seed(parse_seed(BASE_SEED, "base.yaml"))
    worker = deployment.start_worker(park_check_s=0.2, park_hours=0.001)
    s = deployment.settings
    await _publish(deployment, s.topic_fills, [(fill_key(FILLS[1]), FILLS[1])])
    [dead] = await read_topic(s, s.topic_fills_dlq, at_least=1, quiet_s=0.5)
    assert {k: v.decode() for k, v in dead.headers}["error"] == "unattributed"
    assert dead.value == FILLS[1]
    await wait_for(
        lambda: deployment.metrics(worker).value("rebate_parked_fills") == 0, 30, "park empty"
    )

    await _publish(deployment, s.topic_crm_events, [(b"C-88", e) for e in EVENTS[1:3]])
    await wait_for(
        lambda: deployment.metrics(worker).total("rebate_crm_events_total", outcome="applied") == 2,
        30,
        "the account applied",
    )
    await _publish(deployment, s.topic_fills, [(fill_key(dead.value), dead.value)] * 2)
    credits = [r.value for r in await read_topic(s, s.topic_credits, at_least=3, quiet_s=2.0)]
    # Published twice, journaled once: the second copy republishes the same three credits.
    once = {orjson.loads(c)["credit_id"]: c for c in credits}
    assert len(once) == 3
    assert all(c == once[orjson.loads(c)["credit_id"]] for c in credits)
    assert {k: v for k, v in totals(once.values()).items() if not k.startswith("kind ")} == {
        "ib IB-1 USD": Decimal("12.00"),
        "ib IB-M USD": Decimal("1.50"),
        "client C-88 USD": Decimal("3.00"),
    }

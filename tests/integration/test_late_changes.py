"""SPEC 3 r2 through Kafka: a back-office change arriving after the fills it concerns re-settles
them in the worker (reversals, then the recomputed credits, reason late_change), and the net
per (kind, beneficiary) is the offline replay's."""

from __future__ import annotations

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

# Recent times: a change older than correction_window_hours would be dead-lettered too_late.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def _z(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


# C-1 (seed: IB-1, std 15 USD/lot, 20% rebate, IB-M above with 10% of the gross) trades on
# 900001 at +10 and +40; the back office moved it to IB-2 (gold 20 USD/lot, no rebate, no
# parent) at +30 and says so after both fills.
FILLS = [
    fill_line(deal=1, position=1, login=900001, volume=lots(1), open_time=_z(5),
              close_time=_z(10)),
    fill_line(deal=2, position=2, login=900001, volume=lots(2), open_time=_z(35),
              close_time=_z(40)),
]  # fmt: skip
MOVED = crm_line("client_moved", _z(30), client="C-1", ib="IB-2")


async def test_a_late_move_re_settles_the_fill_after_it_through_kafka(
    deployment: Deployment,
) -> None:
    await deployment.load_seed(parse_seed(BASE_SEED, "base.yaml"))
    worker = deployment.start_worker(park_check_s=0.2)
    s = deployment.settings
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap_servers, **s.aiokafka_security_kwargs()
    )
    await producer.start()
    try:
        for f in FILLS:
            await producer.send_and_wait(s.topic_fills, f, key=fill_key(f))
        # Deal 1: 15.00 gross -> C-1 3.00, IB-1 12.00, IB-M 1.50; deal 2: 30.00 -> 6, 24, 3.
        await read_topic(s, s.topic_credits, at_least=6, quiet_s=1.0)
        await producer.send_and_wait(s.topic_crm_events, MOVED, key=b"C-1")
    finally:
        await producer.stop()
    # Deal 2 again: three reversals, then under IB-2 2 lots x 20 = 40.00 (no rebate, no upline).
    credits = [r.value for r in await read_topic(s, s.topic_credits, at_least=10, quiet_s=2.0)]
    assert len(credits) == 10
    assert len(set(credit_ids(credits))) == 10
    late = [orjson.loads(c) for c in credits[6:]]
    assert {c["basis"]["reason"] for c in late} == {"late_change"}
    assert {c["fill"]["deal"] for c in late} == {2}

    ledger = Ledger.from_seed(parse_seed(BASE_SEED, "base.yaml"))
    assert not apply_event_lines([("e", 0, MOVED)], ledger.book).problems
    offline: list[bytes] = []
    replay_lines([("f", n, f) for n, f in enumerate(FILLS)], ledger, offline.append)
    by_beneficiary = {k: v for k, v in totals(credits).items() if not k.startswith("kind ")}
    expected = {k: v for k, v in totals(offline).items() if not k.startswith("kind ")}
    assert (
        {k: v for k, v in by_beneficiary.items() if v}
        == expected
        == {
            "ib IB-1 USD": Decimal("12.00"),
            "ib IB-M USD": Decimal("1.50"),
            "client C-1 USD": Decimal("3.00"),
            "ib IB-2 USD": Decimal("40.00"),
        }
    )
    await wait_for(
        lambda: deployment.metrics(worker).value("rebate_resettled_deals_total") == 1,
        30,
        "one deal re-settled",
    )
    assert deployment.metrics(worker).value("rebate_resettle_jobs_pending") == 0

"""Parked fills (SPEC 4.2 r2) against a real Redis: parked once, settled when the account
arrives exactly as the offline replay settles them, dead-lettered `unattributed` after
park_hours and credited once when re-published."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import orjson
from redis.asyncio import Redis

from agents.crm import CrmEventHandler
from agents.fills import FillProcessor
from agents.messages import Outgoing, Record
from agents.metrics import Metrics
from agents.parked import ParkRelease
from agents.storage import keys
from agents.storage.store import RedisStore
from engine.crm import apply_event_lines
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import parse_seed
from tests.crm_factories import BASE_SEED, crm_line
from tests.factories import TOPICS, fill_line, lots

NOW = datetime.fromisoformat("2024-03-10T00:00:00Z")
PARKED_AT = 1_000_000.0  # the processor's clock (epoch seconds) when it parks
PARK_HOURS = 0.5

# C-60 registers through IB-1's partner code 32071 at 10:00; its account 900060 opens at 10:05
# but the back office sends that event only after the fills (closed 11:00 and 12:00).
REGISTERED = crm_line("client_registered", "2024-03-03T10:00:00Z", client="C-60",
                      ref_code="32071", verified=True)  # fmt: skip
OPENED = crm_line("account_opened", "2024-03-03T10:05:00Z", login=900060, client="C-60",
                  account_type="standard", currency="USD", live=True)  # fmt: skip
# Arriving out of close-time order: deal 60 (2 lots, 12:00) before deal 61 (1 lot, 11:00).
FILLS = [
    fill_line(deal=60, position=60, login=900060, volume=lots(2),
              open_time="2024-03-03T11:50:00Z", close_time="2024-03-03T12:00:00Z"),
    fill_line(deal=61, position=61, login=900060, volume=lots(1),
              open_time="2024-03-03T10:50:00Z", close_time="2024-03-03T11:00:00Z"),
]  # fmt: skip


class Bench:
    """A fills processor, a crm handler and the park release on one store, and what they sent."""

    def __init__(self, redis: Redis) -> None:
        self.store = RedisStore(redis)
        self.metrics = Metrics()
        self.processor = FillProcessor(self.store, self.metrics, TOPICS, clock=lambda: PARKED_AT)
        self.crm = CrmEventHandler(self.store, self.metrics, "crm.dlq", 240, lambda: NOW)
        self.release = ParkRelease(
            RedisStore(redis),  # another worker's store: it learns the rules from Redis
            FillProcessor(self.store, self.metrics, TOPICS),
            self.metrics,
            fills_topic="fills.v1",
            dead_letter_topic=TOPICS.dead_letters,
            park_hours=PARK_HOURS,
            batch_max=500,
        )
        self.sent: list[Outgoing] = []

    async def publish(self, outgoing: Sequence[Outgoing]) -> None:
        self.sent += outgoing

    async def fills(self, *lines: bytes) -> list[Outgoing]:
        records = [Record(line, "fills.v1", 0, i) for i, line in enumerate(lines)]
        return (await self.processor.process(records)).outgoing

    async def events(self, *lines: bytes) -> None:
        records = [Record(line, "crm-events.v1", 0, i) for i, line in enumerate(lines)]
        assert await self.crm.handle(records) == []

    async def parked(self) -> int:
        count, _ = await self.store.parked_summary()
        return count

    def credits(self) -> list[bytes]:
        return [o.value for o in self.sent if o.topic == TOPICS.credits]


async def bench(redis: Redis) -> Bench:
    b = Bench(redis)
    await b.store.load_seed(parse_seed(BASE_SEED, "base.yaml"))
    await b.events(REGISTERED)
    return b


def offline(events: list[bytes], fills: list[bytes]) -> list[bytes]:
    """What `replay --crm-events` writes: events applied by `at` first, then the fills."""
    ledger = Ledger.from_seed(parse_seed(BASE_SEED, "base.yaml"))
    assert not apply_event_lines([("e", n, e) for n, e in enumerate(events)], ledger.book).problems
    out: list[bytes] = []
    replay_lines([("f", n, f) for n, f in enumerate(fills)], ledger, out.append)
    return [line.rstrip(b"\n") for line in out]


def amounts(credits: list[bytes]) -> list[tuple[int, str, str, str]]:
    rows = [orjson.loads(c) for c in credits]
    return [(r["fill"]["deal"], r["kind"], r["beneficiary"]["id"], r["amount"]) for r in rows]


async def test_a_fill_parked_then_settled_when_its_account_arrives_equals_the_offline_replay(
    redis: Redis,
) -> None:
    b = await bench(redis)
    assert await b.fills(*FILLS) == []
    assert await b.fills(*FILLS) == []  # redelivered: parked once, never twice
    assert await b.parked() == 2
    await b.release.release(b.publish, PARKED_AT + 60)
    assert b.sent == [] and await b.parked() == 2  # no account yet: they wait

    await b.events(OPENED)
    await b.release.release(b.publish, PARKED_AT + 60)
    # std plan 15 USD/lot, IB-1's default rebate 20%, IB-M (std) 10% of the L1 gross:
    #   deal 61 (11:00, first): 1 x 15 = 15.00 -> C-60 3.00, IB-1 12.00, IB-M 1.50
    #   deal 60 (12:00):        2 x 15 = 30.00 -> C-60 6.00, IB-1 24.00, IB-M 3.00
    assert sorted(amounts(b.credits())) == sorted([
        (61, "ib_commission", "IB-1", "12.00"), (61, "client_rebate", "C-60", "3.00"),
        (61, "ib_override", "IB-M", "1.50"),
        (60, "ib_commission", "IB-1", "24.00"), (60, "client_rebate", "C-60", "6.00"),
        (60, "ib_override", "IB-M", "3.00"),
    ])  # fmt: skip
    assert next(deal for deal, *_ in amounts(b.credits())) == 61  # close-time order
    # Byte for byte what the offline replay writes, which knows the account from its `at`.
    assert b.credits() == offline([REGISTERED, OPENED], [FILLS[1], FILLS[0]])
    assert await b.parked() == 0
    assert await redis.zcard(keys.PARKED.format(login=900060)) == 0
    assert await redis.scard(keys.PARKED_LOGINS) == 0

    # Redelivered once more after all this: the journal answers, nothing is paid twice.
    again = await b.fills(*FILLS)
    assert sorted(o.value for o in again) == sorted(b.credits())
    b.sent.clear()
    await b.release.release(b.publish, PARKED_AT + 120)
    assert b.sent == []


async def test_a_fill_closed_before_its_account_took_effect_stays_parked(redis: Redis) -> None:
    # The account is effective at 10:05: a fill closed at 10:04 is not attributed at its
    # close_time even once the account is known, as the offline replay finds too.
    b = await bench(redis)
    early = fill_line(deal=62, position=62, login=900060, open_time="2024-03-03T10:00:00Z",
                      close_time="2024-03-03T10:04:00Z")  # fmt: skip
    await b.fills(early, FILLS[1])
    await b.events(OPENED)
    await b.release.release(b.publish, PARKED_AT + 60)
    assert {deal for deal, *_ in amounts(b.credits())} == {61}
    assert await b.parked() == 1
    assert await redis.smembers(keys.PARKED_LOGINS) == {b"900060"}


async def test_parked_past_park_hours_is_dead_lettered_then_credited_once_when_re_published(
    redis: Redis,
) -> None:
    b = await bench(redis)
    await b.fills(FILLS[1])
    await b.release.update_metrics(PARKED_AT + 1799)
    sample = b.metrics.registry.get_sample_value
    assert (sample("rebate_parked_fills"), sample("rebate_parked_oldest_seconds")) == (1, 1799)
    await b.release.release(b.publish, PARKED_AT + 1799)  # 0.5 h = 1800 s: one second to go
    assert b.sent == []

    await b.release.release(b.publish, PARKED_AT + 1800)
    [dead] = b.sent
    assert (dead.topic, dead.value) == (TOPICS.dead_letters, FILLS[1])  # replayable as it is
    assert dict(dead.headers)["error"] == b"unattributed"
    assert await b.parked() == 0
    assert sample("rebate_dead_letters_total", {"reason": "unattributed"}) == 1

    # The account is added, the dead letter re-published: credited (15.00 split as above), once.
    await b.events(OPENED)
    first = [o.value for o in await b.fills(dead.value) if o.topic == TOPICS.credits]
    again = [o.value for o in await b.fills(dead.value) if o.topic == TOPICS.credits]
    assert sorted(amounts(first)) == sorted([
        (61, "ib_commission", "IB-1", "12.00"), (61, "client_rebate", "C-60", "3.00"),
        (61, "ib_override", "IB-M", "1.50"),
    ])  # fmt: skip
    assert again == first  # the redelivery publishes the same credit ids: no new money
    assert sum(Decimal(orjson.loads(c)["amount"]) for c in first) == Decimal("16.50")
    await b.release.release(b.publish, PARKED_AT + 3600)
    assert await b.parked() == 0 and len(b.sent) == 1


async def test_a_release_killed_before_unparking_publishes_the_same_credits_and_pays_once(
    redis: Redis,
) -> None:
    # A worker settles the parked fills, then dies before their credits are acknowledged (so
    # before it unparks them). The next release settles them again: the journal answers with
    # what was emitted, the same credit ids, and the reward wallet and IB sums move once.
    b = await bench(redis)
    await b.fills(*FILLS)
    await b.events(OPENED)
    parked = await b.store.parked_of(900060)
    dying = FillProcessor(b.store, Metrics(), TOPICS)
    lost = await dying.process([Record(p.value, "fills.v1", -1, -1) for p in parked])
    settle_sums = {k: await redis.hgetall(k) async for k in redis.scan_iter("rebate:settle:2*")}
    assert settle_sums, "no IB sums to compare: the check below would pass on nothing"
    assert await b.parked() == 2  # nothing was unparked: the worker died first

    await b.release.release(b.publish, PARKED_AT + 60)
    assert sorted(b.credits()) == sorted(o.value for o in lost.credits)
    assert await b.parked() == 0
    assert {k: await redis.hgetall(k) async for k in redis.scan_iter("rebate:settle:2*")} == (
        settle_sums
    )


async def test_a_parked_add_and_its_delete_settle_in_order_as_the_offline_replay(
    redis: Redis,
) -> None:
    # The bridge deletes deal 61 before the back office sends its account: the delete waits
    # behind the add (same close_time, parked after it), so the add is credited and then taken
    # back, as the offline replay does: net 0 for everyone.
    b = await bench(redis)
    delete = fill_line(deal=61, position=61, login=900060, volume=lots(1), event="delete",
                       open_time="2024-03-03T10:50:00Z", close_time="2024-03-03T11:00:00Z")  # fmt: skip
    await b.fills(FILLS[1], delete)
    assert await b.parked() == 2
    await b.events(OPENED)
    await b.release.release(b.publish, PARKED_AT + 60)
    assert b.credits() == offline([REGISTERED, OPENED], [FILLS[1], delete])
    kinds = [(kind, amount) for _, kind, _, amount in amounts(b.credits())]
    assert len(kinds) == 6 and [k for k, _ in kinds[3:]] == ["reversal"] * 3
    assert sum(Decimal(a) for _, a in kinds) == 0

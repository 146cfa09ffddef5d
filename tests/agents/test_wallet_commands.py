"""SPEC 6 wallet commands through Redis: decided once, applied atomically, answered the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

import schemas
from agents.fills import FillProcessor
from agents.messages import Outgoing, Record
from agents.metrics import Metrics
from agents.storage import keys
from agents.storage.store import RedisStore
from agents.wallet_commands import WalletCommandHandler
from engine.seed import parse_seed
from tests.factories import TOPICS, fill_line, lots

SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: flat
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}
ibs:
  - {id: IB-1, plan: flat, rebate_pct: "20"}
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-2, ib: IB-1, verified: false}
accounts:
  - {login: 1001, client: C-1, type: standard}
  - {login: 1002, client: C-2, type: standard}
wallets:
  - {client: C-1, reward_jm: "30.00"}
  - {client: C-2, reward_jm: "30.00"}
"""
# 2024-03-01T09:00:00Z, the Kafka timestamp of every command: the decision instant.
TS_MS = int(datetime(2024, 3, 1, 9, tzinfo=UTC).timestamp() * 1000)


def allocate(request_id: str = "r-1", client: str = "C-1", login: int = 1001,
             amount: str = "12.50") -> dict[str, Any]:  # fmt: skip
    return {"schema": "wallet-command.v1", "command": "allocate_jm", "request_id": request_id,
            "client": client, "login": login, "amount": amount}  # fmt: skip


def grant(request_id: str = "g-1", login: int = 1001, bonus_id: str = "B-1",
          amount_usd: str = "4", **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"schema": "wallet-command.v1", "command": "grant_bonus", "request_id": request_id,
            "login": login, "bonus_id": bonus_id, "amount_usd": amount_usd, **extra}  # fmt: skip


def records(*commands: dict[str, Any] | bytes) -> list[Record]:
    return [
        Record(c if isinstance(c, bytes) else orjson.dumps(c), "wallet-commands.v1", 0, i, TS_MS)
        for i, c in enumerate(commands)
    ]


def events(out: list[Outgoing]) -> list[dict[str, Any]]:
    decoded = [orjson.loads(o.value) for o in out]
    for event in decoded:
        schemas.validate("wallet-event.v1", event)
    return decoded


async def seeded(redis: Redis) -> RedisStore:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(SEED, "wallet-seed.yaml"))
    return store


def count(metrics: Metrics, command: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "rebate_wallet_commands_total", {"command": command, "result": result}
    )
    return value or 0.0


async def test_accepted_allocation_moves_jm_from_the_reward_wallet_to_the_account(
    redis: Redis,
) -> None:
    store, metrics = await seeded(redis), Metrics()
    handler = WalletCommandHandler(store, metrics, "wallet-events.v1")
    out = await handler.handle(records(allocate(amount="12.50")))
    [event] = events(out)
    assert out[0].topic == "wallet-events.v1" and out[0].key == b"1001"
    assert event["event"] == "jm_allocation_accepted"
    assert (event["amount"], event["reward_jm_balance"], event["jm_allocated_balance"]) == (
        "12.50",
        "17.50",
        "12.50",
    )
    assert event["allocated_at"] == "2024-03-01T09:00:00Z"  # the command's Kafka timestamp
    assert await redis.get(keys.REWARD.format(client="C-1")) == b"1750"
    version, account = await store.account(1001)
    assert version == 1 and account.jm_balance == Decimal("12.50")
    assert account.allocations[0].allocated_at == datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert count(metrics, "allocate_jm", "accepted") == 1


@pytest.mark.parametrize(
    ("client", "login", "amount", "reason"),
    [
        ("C-2", 1002, "10.00", "client_not_verified"),
        ("C-1", 1002, "10.00", "login_not_owned"),
        ("C-1", 4242, "10.00", "login_not_owned"),
        ("C-1", 1001, "30.01", "insufficient_reward_balance"),
        ("C-9", 1001, "1.00", "unknown_client"),
    ],
)
async def test_allocation_is_rejected_with_the_reason_and_changes_nothing(
    redis: Redis, client: str, login: int, amount: str, reason: str
) -> None:
    store, metrics = await seeded(redis), Metrics()
    before = {c: await redis.get(keys.REWARD.format(client=c)) for c in ("C-1", "C-2")}
    out = await WalletCommandHandler(store, metrics, TOPICS.wallet_events).handle(
        records(allocate(client=client, login=login, amount=amount))
    )
    [event] = events(out)
    assert (event["event"], event["reason"]) == ("jm_allocation_rejected", reason)
    assert event["detail"]
    assert {c: await redis.get(keys.REWARD.format(client=c)) for c in ("C-1", "C-2")} == before
    version, account = await store.account(login)
    assert version == 0
    assert account.jm_balance == 0
    assert count(metrics, "allocate_jm", "rejected") == 1


async def test_the_whole_reward_balance_can_be_allocated(redis: Redis) -> None:
    store = await seeded(redis)
    out = await WalletCommandHandler(store, Metrics(), TOPICS.wallet_events).handle(
        records(allocate(amount="30.00"))
    )
    assert events(out)[0]["event"] == "jm_allocation_accepted"
    assert await redis.get(keys.REWARD.format(client="C-1")) == b"0"


async def test_same_request_id_twice_changes_nothing_and_gives_the_same_event(
    redis: Redis,
) -> None:
    store, metrics = await seeded(redis), Metrics()
    first = await WalletCommandHandler(store, metrics, TOPICS.wallet_events).handle(
        records(allocate("r-7"))
    )
    state = (await redis.get(keys.REWARD.format(client="C-1")), await store.account(1001))
    # Redelivered in a later batch, to a restarted worker, and twice within one batch.
    again = await WalletCommandHandler(store, metrics, TOPICS.wallet_events).handle(
        records(allocate("r-7"))
    )
    twice = await WalletCommandHandler(store, metrics, TOPICS.wallet_events).handle(
        records(allocate("r-7"), allocate("r-7"))
    )
    assert [o.value for o in again] == [first[0].value]
    assert [o.value for o in twice] == [first[0].value] * 2
    assert (await redis.get(keys.REWARD.format(client="C-1")), await store.account(1001)) == state
    assert count(metrics, "allocate_jm", "accepted") == 1
    assert count(metrics, "allocate_jm", "duplicate") == 3


async def test_a_rejection_is_final_for_its_request_id(redis: Redis) -> None:
    store = await seeded(redis)
    handler = WalletCommandHandler(store, Metrics(), TOPICS.wallet_events)
    [no] = await handler.handle(records(allocate("r-1", amount="50.00")))
    await redis.incrby(keys.REWARD.format(client="C-1"), 5000)  # the wallet fills up later
    [still_no] = await handler.handle(records(allocate("r-1", amount="50.00")))
    assert still_no.value == no.value
    assert events([no])[0]["reason"] == "insufficient_reward_balance"


async def test_a_balance_moved_between_read_and_write_is_caught_and_decided_again(
    redis: Redis,
) -> None:
    store = await seeded(redis)
    handler = WalletCommandHandler(store, Metrics(), TOPICS.wallet_events)
    read = store.wallet_snapshot
    calls = 0

    async def snapshot_then_accrue(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        result = await read(*args)
        if calls == 1:  # a fill's loyalty accrual lands right after our read: 30.00 -> 35.00
            await redis.incrby(keys.REWARD.format(client="C-1"), 500)
        return result

    store.wallet_snapshot = snapshot_then_accrue  # type: ignore[method-assign]
    [event] = events(await handler.handle(records(allocate(amount="12.50"))))
    assert calls == 2  # conflict, then read and decide again
    assert event["reward_jm_balance"] == "22.50"
    assert await redis.get(keys.REWARD.format(client="C-1")) == b"2250"


async def test_concurrent_allocations_never_overdraw_the_reward_wallet(redis: Redis) -> None:
    store = await seeded(redis)
    # Two workers (say, during a rebalance) each allocate 20.00 of the 30.00 at once.
    a = WalletCommandHandler(RedisStore(redis), Metrics(), TOPICS.wallet_events)
    b = WalletCommandHandler(RedisStore(redis), Metrics(), TOPICS.wallet_events)
    out_a, out_b = await asyncio.gather(
        a.handle(records(allocate("r-a", amount="20.00"))),
        b.handle(records(allocate("r-b", amount="20.00"))),
    )
    answers = sorted(e["event"] for e in events(out_a + out_b))
    assert answers == ["jm_allocation_accepted", "jm_allocation_rejected"]
    assert await redis.get(keys.REWARD.format(client="C-1")) == b"1000"
    assert (await store.account(1001))[1].jm_balance == Decimal("20.00")


async def test_invalid_commands_are_counted_and_skipped(redis: Redis) -> None:
    store, metrics = await seeded(redis), Metrics()
    out = await WalletCommandHandler(store, metrics, TOPICS.wallet_events).handle(
        records(
            b"{not json",
            allocate(amount="0"),  # amounts must be positive
            {**allocate(), "command": "burn_jm"},
            allocate("r-ok"),
        )
    )
    assert [e["request_id"] for e in events(out)] == ["r-ok"]
    assert count(metrics, "unknown", "invalid") == 2
    assert count(metrics, "allocate_jm", "invalid") == 1


async def test_granted_bonus_is_unlocked_by_turnover_through_the_fill_processor(
    redis: Redis,
) -> None:
    store = await seeded(redis)
    processor = FillProcessor(store, Metrics(), TOPICS)

    def fill_records(deal: int) -> list[Record]:  # 1 lot of account 1001, closed 10:10Z
        return [Record(fill_line(deal=deal, login=1001, volume=lots(1)), "fills.v1", 0, deal)]

    def unlocked(result: Any) -> list[dict[str, Any]]:
        out = [o for o in result.outgoing if o.topic == "wallet-events.v1"]
        return [e for e in events(out) if e["event"] == "bonus_unlocked"]

    assert unlocked(await processor.process(fill_records(1))) == []  # caches account 1001
    # 4 USD bonus: unlocks at 2 lots of fills closed from 09:00 on.
    [granted] = events(
        await WalletCommandHandler(store, Metrics(), TOPICS.wallet_events).handle(records(grant()))
    )
    assert (granted["event"], granted["required_lots"]) == ("bonus_granted", "2")
    assert granted["granted_at"] == "2024-03-01T09:00:00Z"
    assert unlocked(await processor.process(fill_records(2))) == []  # stale cache: CAS reloads
    [unlock] = unlocked(await processor.process(fill_records(3)))
    assert (unlock["bonus_id"], unlock["turnover_lots"]) == ("B-1", "2")
    assert unlock["fill"]["deal"] == 3


async def test_grant_takes_granted_at_from_the_command_and_refuses_a_second_bonus_id(
    redis: Redis,
) -> None:
    store, metrics = await seeded(redis), Metrics()
    handler = WalletCommandHandler(store, metrics, TOPICS.wallet_events)
    [granted] = events(
        await handler.handle(records(grant(granted_at="2024-02-01T00:00:00Z", amount_usd="500")))
    )
    assert (granted["granted_at"], granted["required_lots"]) == ("2024-02-01T00:00:00Z", "250")
    state = await store.account(1001)
    # The same bonus id again under another request: refused, state unchanged. wallet-event.v1
    # has no bonus_rejected event yet, so the answer is stored and counted, not published.
    out = await handler.handle(records(grant("g-2", amount_usd="500")))
    events(out)  # whatever is published validates
    assert await store.account(1001) == state
    assert count(metrics, "grant_bonus", "rejected") == 1
    assert await redis.exists(keys.REQUEST.format(request_id="g-2"))

"""The Redis path (FillProcessor + Lua) gives exactly the offline ledger's credits, once."""

from __future__ import annotations

import glob
import random
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from agents.fills import FillProcessor
from agents.messages import Record
from agents.metrics import Metrics
from agents.storage.store import RedisStore
from engine.fill import decode_fill
from engine.ledger import Ledger
from engine.replay import replay_lines
from engine.seed import Seed, load_seed, parse_seed
from tests.factories import TOPICS, fill_line, lots

REAL = sorted(glob.glob("sample/fills/mt4-real-*.fills.jsonl"))


def _real_lines() -> list[bytes]:
    return [line for path in REAL for line in Path(path).read_bytes().splitlines()]


def _records(lines: list[bytes]) -> list[Record]:
    return [Record(line, "fills.v1", 0, i, 1_700_000_000_000) for i, line in enumerate(lines)]


def _offline(lines: list[bytes], seed: Seed | None = None) -> list[bytes]:
    out: list[bytes] = []
    ledger = Ledger.from_seed(seed or load_seed("sample/seed.yaml"))
    replay_lines([("x", i, line) for i, line in enumerate(lines)], ledger, out.append)
    return [o.rstrip(b"\n") for o in out]


async def _run(processor: FillProcessor, lines: list[bytes], batch: int) -> list[bytes]:
    credits: list[bytes] = []
    records = _records(lines)
    for start in range(0, len(records), batch):
        result = await processor.process(records[start : start + batch])
        credits += [o.value for o in result.outgoing if o.topic == "credits.v1"]
    return credits


async def test_real_histories_through_redis_match_the_offline_replay(redis: Redis) -> None:
    lines = _real_lines()
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    processor = FillProcessor(store, Metrics(), TOPICS)
    credits = await _run(processor, lines, batch=250)
    assert credits == _offline(lines)


async def test_redelivered_batch_republishes_the_same_credits_and_changes_nothing(
    redis: Redis,
) -> None:
    lines = [fill_line(deal=d, volume=lots(1), commission="-6.00", login=900001) for d in range(40)]
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    first = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=16)
    state = await store.account(900001)
    # A restarted worker (cold cache) gets the same records again after a crash.
    again = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=7)
    assert first, "nothing was credited: the comparison below would pass on empty"
    assert again == first
    assert await store.account(900001) == state
    assert len({orjson.loads(c)["credit_id"] for c in first}) == len(first)


async def test_stale_cache_is_caught_by_compare_and_set(redis: Redis) -> None:
    # Two processors on the same logins (a rebalance moved the partition): the second one's
    # cached wallet state is stale, the Lua check catches it and it recomputes.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    a, b = FillProcessor(store, Metrics(), TOPICS), FillProcessor(store, Metrics(), TOPICS)
    line = lambda d: fill_line(deal=d, login=900001, commission="-8.00")  # noqa: E731
    await _run(a, [line(1)], 1)
    await _run(b, [line(2)], 1)  # b caches the account after deal 2
    await _run(a, [line(3)], 1)  # a's cache predates deal 2: conflict, reload, recompute
    await _run(b, [line(4)], 1)  # b's cache predates deal 3: same
    version, state = await store.account(900001)
    ledger = Ledger.from_seed(load_seed("sample/seed.yaml"))
    for d in (1, 2, 3, 4):
        ledger.process(decode_fill(line(d)))
    assert state == ledger.account(900001)  # coverage drawn exactly as in one sequence
    assert version == 5  # seed + four applied revisions


async def test_a_redelivery_publishes_the_stored_credits_not_a_recomputation(
    redis: Redis,
) -> None:
    # 900001 has 5.00 JM allocated on 2024-08-01. Three fills opened after it, each costing
    # $6 (coverage wants 3.00): the first is covered 3.00, the second 2.00, the third nothing.
    # Re-delivered after a crash, the first fill recomputes to no coverage (balance now 0):
    # the worker must publish what was emitted then (3.00), byte for byte.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    times = {"open_time": "2024-09-01T10:00:00Z", "close_time": "2024-09-01T10:30:00Z"}
    lines = [fill_line(deal=d, login=900001, commission="-6.00", **times) for d in (1, 2, 3)]
    first = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=3)
    again = await _run(FillProcessor(store, Metrics(), TOPICS), lines[:1], batch=1)
    covered = [orjson.loads(c) for c in first if orjson.loads(c)["kind"] == "jm_coverage"]
    assert [c["amount"] for c in covered] == ["3.00", "2.00"]
    assert again == [c for c in first if orjson.loads(c)["fill"]["deal"] == 1]


async def test_why_a_fill_earned_less_than_its_plan_is_counted_by_reason(redis: Redis) -> None:
    # sample/seed.yaml: 900001 is C-1 under IB-1 (plan std: min hold 180 s, min 10 points).
    # Deal 1 is held 120 s (min_hold), deal 2 moves 5 points (min_points), deal 3 earns in
    # full (deal 3 delivered again is a duplicate). Login 777 is no account (unattributed).
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    metrics = Metrics()
    earning = fill_line(deal=3, login=900001, commission="-6.00")
    lines = [
        fill_line(deal=1, login=900001, close_time="2024-03-01T10:02:00Z"),
        fill_line(deal=2, login=900001, close_price="1.08005"),
        earning,
        fill_line(deal=4, login=777),
    ]
    await _run(FillProcessor(store, metrics, TOPICS), lines, batch=4)
    await _run(FillProcessor(store, metrics, TOPICS), [earning], batch=1)
    counted = {
        reason: metrics.fill_reasons.labels(reason)._value.get()
        for reason in ("min_hold", "min_points", "duplicate", "unattributed", "demo")
    }
    assert counted == {"min_hold": 1, "min_points": 1, "duplicate": 1, "unattributed": 1, "demo": 0}


R2_SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50"}
account_types: {standard_cent: {lot_scale: "0.01"}}
symbols: {groups: {metals: [XAUUSD]}}
plans:
  - id: p
    rules:
      - {id: gold, account_types: ["*"], symbols: [metals], per_lot_usd: "20"}
      - {id: fx, account_types: ["*"], symbols: ["*"], per_lot_usd: "10",
         client_rebate_usd_per_lot: "3"}
  - {id: m, rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "1"}],
     upline_override_pct: ["20"]}
ibs:
  - {id: IB-M, plan: m, client: C-M}
  - {id: IB-1, plan: p, parent: IB-M, rebate_pct: "20"}
  - {id: IB-2, plan: p, parent: IB-M, rebate_pct: "10"}
clients:
  - {id: C-1, ib: IB-1, verified: true, rebate_pct: "50"}
  - {id: C-M, ib: IB-1, verified: true}
accounts:
  - {login: 1, client: C-1, type: standard_cent}
  - {login: 2, client: C-M, type: standard}
changes:
  - {at: "2024-04-01T00:00:00Z", client: C-1, ib: IB-2}
"""


async def test_r2_money_through_redis_matches_the_offline_replay(redis: Redis) -> None:
    # Cent gold: 1 lot x 0.01 x 20 = 0.20 gross, C-1's 50% = 0.10, IB-M 20% = 0.04.
    # IB-M's own client C-M under IB-1: 2 lots x 3 USD per-lot rebate = 6.00 of 20.00, no
    # override for IB-M. A refund (+4.00) is no cost. After the move to IB-2 C-1's 50% is gone:
    # 100 cent lots = 1 std lot x 10 = 10.00, the plan's 3 USD/std lot = 3.00.
    gold = {"symbol": "XAUUSD", "open_price": "2000.00", "close_price": "2001.00", "digits": 2}
    lines = [
        fill_line(deal=1, login=1, volume=lots(1), currency="USC", **gold),
        fill_line(deal=2, login=2, volume=lots(2), commission="4.00", spread_points=10,
                  point_value="1"),
        fill_line(deal=3, login=1, volume=lots(100), currency="USC",
                  open_time="2024-05-01T10:00:00Z", close_time="2024-05-01T10:10:00Z"),
    ]  # fmt: skip
    seed = parse_seed(R2_SEED, "r2.yaml")
    store = RedisStore(redis)
    await store.load_seed(seed)
    credits = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=3)
    assert credits == _offline(lines, seed)
    paid = {
        (c["fill"]["deal"], c["kind"], c["beneficiary"]["id"]): c["amount"]
        for c in map(orjson.loads, credits)
    }
    assert paid == {
        (1, "ib_commission", "IB-1"): "0.10",
        (1, "client_rebate", "C-1"): "0.10",
        (1, "ib_override", "IB-M"): "0.04",
        (2, "ib_commission", "IB-1"): "14.00",
        (2, "client_rebate", "C-M"): "6.00",
        # cost 10 points x 1 USD x 2 lots = 20.00 (the +4.00 refund is no cost): 10% = 2.00
        (2, "loyalty_accrual", "C-M"): "2.00",
        (3, "ib_commission", "IB-2"): "7.00",
        (3, "client_rebate", "C-1"): "3.00",
        (3, "ib_override", "IB-M"): "2.00",  # 20% x 10.00
    }


def _fills(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("rebate_fills_total", {"outcome": outcome})


def _kinds(credits: list[bytes]) -> list[tuple[str, str, str]]:
    return [(c["kind"], c["beneficiary"]["id"], c["amount"]) for c in map(orjson.loads, credits)]


async def test_a_non_earning_add_is_journaled_so_its_redelivery_reverses_nothing(
    redis: Redis,
) -> None:
    # Issue 9's crash case. sample/seed.yaml: 900001 is C-1's standard account under IB-1,
    # whose plan "std" withholds the commission below 180 s of hold; loyalty accrues 10% of
    # the cost; the account's JM allocation (2024-08-01) postdates the position, so no coverage.
    # The add (held 120 s, no commission) earns nothing at all. Its update charges 7.00
    # commission: IB-1's commission is still withheld (same times), the loyalty accrual is
    # 10% x 7.00 = 0.70 JM USD to C-1.
    times = {"open_time": "2024-03-01T10:00:00Z", "close_time": "2024-03-01T10:02:00Z"}
    add = fill_line(deal=77, login=900001, commission="0.00", **times)
    update = fill_line(deal=77, login=900001, commission="-7.00", event="update", **times)
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    first = await _run(FillProcessor(store, Metrics(), TOPICS), [add, update], batch=1)
    assert _kinds(first) == [("loyalty_accrual", "C-1", "0.70")]
    assert first == _offline([add, update])
    reward = await store.reward_balance("C-1")
    # Redelivered after a crash, the add in the same batch as its update: the add must find
    # itself in the journal (a duplicate), never be settled against the update's standing.
    again = await _run(FillProcessor(store, Metrics(), TOPICS), [add, update], batch=2)
    assert again == first  # the update's stored credit, published again; nothing new
    assert await store.reward_balance("C-1") == reward == Decimal("100.70")  # seed 100.00
    # The offline ledger sees the same four messages the same way.
    assert _offline([add, update, add, update]) == first


async def test_every_revision_is_journaled_earning_or_not(redis: Redis) -> None:
    # An "in" deal, an unknown login and a withheld add: each is recorded, so a redelivery
    # is a duplicate (SPEC 7 r2) and not settled again under whatever stands or rules then.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    lines = [
        fill_line(deal=1, login=900001, entry="in", close_time="2024-03-01T10:00:00Z"),
        fill_line(deal=2, login=424242),
        fill_line(deal=3, login=900001, close_time="2024-03-01T10:01:00Z"),
    ]
    metrics = Metrics()
    processor = FillProcessor(store, metrics, TOPICS)
    await _run(processor, lines, batch=3)
    for deal in (1, 2, 3):
        assert await redis.hkeys(f"rebate:deal:mt4-live-1:{deal}"), deal
    processor.forget_accounts()
    await _run(processor, lines, batch=3)
    assert _fills(metrics, "duplicate") == 3


async def test_a_dealer_undoing_a_correction_with_seq_leaves_the_first_content(
    redis: Redis,
) -> None:
    # sample/seed.yaml, 900001 (C-1 under IB-1, plan std: EURUSD on a standard account pays
    # 15 USD a lot; C-1 gets IB-1's default 20% before 2024-10-01; IB-REGION's plan pays
    # uplines 20% at level 1, IB-MASTER's 5% at level 2). No commission: no loyalty.
    # Content A, 1 lot: gross 15.00 -> C-1 3.00, IB-1 12.00, IB-REGION 3.00, IB-MASTER 0.75.
    # Content B, 2 lots: gross 30.00 -> C-1 6.00, IB-1 24.00, IB-REGION 6.00, IB-MASTER 1.50.
    lines = [
        fill_line(deal=88, login=900001, volume=lots(1), seq=1),
        fill_line(deal=88, login=900001, volume=lots(2), seq=2, event="update"),
        fill_line(deal=88, login=900001, volume=lots(1), seq=3, event="update"),
    ]
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    credits = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=1)
    assert credits == _offline(lines)
    net: dict[str, Decimal] = {}
    for kind, who, amount in _kinds(credits):
        if kind != "loyalty_accrual":
            net[who] = net.get(who, Decimal(0)) + Decimal(amount)
    # A, then -A + B, then -B + A: what stands is A.
    assert net == {
        "IB-1": Decimal("12.00"),
        "C-1": Decimal("3.00"),
        "IB-REGION": Decimal("3.00"),
        "IB-MASTER": Decimal("0.75"),
    }
    # A late seq=2 (redelivered: a duplicate) and a seq=2 never seen (other content: stale)
    # change nothing; a redelivery of seq=2 publishes its stored credits again.
    metrics = Metrics()
    late = [lines[1], fill_line(deal=88, login=900001, volume=lots(5), seq=2, event="update")]
    again = await _run(FillProcessor(store, metrics, TOPICS), late, batch=1)
    assert set(again) <= set(credits)
    assert _fills(metrics, "stale") == 1
    assert _fills(metrics, "duplicate") == 1
    # The journal keeps them as counts on the deal (bounded whatever Kafka redelivers).
    assert await store.deal_repeats("mt4-live-1", 88) == (1, 1)


async def test_seq_beyond_double_precision_still_orders_revisions(redis: Redis) -> None:
    # 2^60 and 2^60 + 1 are one double apart from nothing: as Lua numbers they compare equal.
    big = 2**60
    lines = [
        fill_line(deal=89, login=900001, volume=lots(1), seq=big),
        fill_line(deal=89, login=900001, volume=lots(2), seq=big + 1, event="update"),
        fill_line(deal=89, login=900001, volume=lots(3), seq=big, event="update"),
    ]
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    metrics = Metrics()
    credits = await _run(FillProcessor(store, metrics, TOPICS), lines, batch=1)
    assert credits == _offline(lines)
    assert _fills(metrics, "credited") == 2
    assert _fills(metrics, "stale") == 1


async def test_random_seq_streams_give_the_offline_credits_through_redis(redis: Redis) -> None:
    # Bridge messages with seq (mostly), delivered late, twice and out of order, in batches of
    # any size: the Redis path publishes what the offline ledger credits (a duplicate publishes
    # its stored credits again, which wallets dedupe by id), so a replay with seq is
    # deterministic. This found a revision repeated within one batch publishing its local
    # computation although its first copy was stale: only the script decides.
    rng = random.Random(20261202)
    for _ in range(25):
        await redis.flushdb()
        store = RedisStore(redis)
        await store.load_seed(load_seed("sample/seed.yaml"))
        messages = [
            fill_line(
                deal=rng.choice((1, 2)),
                login=rng.choice((900001, 900002, 900003)),  # the seed's three accounts
                volume=lots(rng.choice((1, 2, 3))),
                event=rng.choice(("add", "update", "delete")),
                seq=rng.choice((seq, seq, None)),  # now and then a message without seq
            )
            for seq in range(rng.randint(1, 8))
        ]
        delivered = [rng.choice(messages) for _ in range(rng.randint(1, 14))]
        published = await _run(
            FillProcessor(store, Metrics(), TOPICS), delivered, rng.randint(1, 5)
        )
        assert list(dict.fromkeys(published)) == _offline(delivered), delivered


async def test_a_redelivery_publishes_the_stored_bytes_even_after_an_upgrade(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The credits a fill emitted are part of the journal; a worker of a newer engine version
    # that gets the fill again publishes them as they were, old engine_version included.
    store = RedisStore(redis)
    await store.load_seed(load_seed("sample/seed.yaml"))
    lines = [fill_line(deal=1, login=900001, volume=lots(1), commission="-6.00")]
    first = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=1)
    monkeypatch.setattr("agents.storage.codec.__version__", "99.0.0")
    again = await _run(FillProcessor(store, Metrics(), TOPICS), lines, batch=1)
    assert first, "nothing was credited: the comparison below would pass on empty"
    assert again == first
    assert {orjson.loads(c)["engine_version"] for c in again} != {"99.0.0"}

"""`explain --live`: what the worker's pipeline journaled in Redis, told by the same step builders
as the offline form, equals the offline explanation (one engine, two stores): every deal's
revisions, a login's deals and its wallet."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from agents.explain import live_deal, live_login
from agents.fills import FillProcessor
from agents.messages import Record
from agents.metrics import Metrics
from agents.settings import Settings
from agents.storage import keys
from agents.storage.store import RedisStore
from engine.explain import Recorded, explain_deal, explain_login, replay_for_explain
from engine.ledger import Ledger
from engine.seed import parse_seed
from tests.explain_scenario import FILLS, MIN_HOLD, SEED, SERVER, fill_lines
from tests.factories import TOPICS


async def _settle_in_redis(redis: Redis, lines: list[bytes], *, twice: bool = False) -> None:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(SEED, "explain-seed.yaml"))
    processor = FillProcessor(store, Metrics(), TOPICS)
    records = [Record(line, "fills.v1", 0, i, 0) for i, line in enumerate(lines)]
    await processor.process(records)
    if twice:  # a redelivery of the whole batch: duplicates, journaled nowhere
        await processor.process(records)


def _offline(lines: list[bytes], **wanted: Any) -> Recorded:
    ledger = Ledger.from_seed(parse_seed(SEED, "explain-seed.yaml"))
    numbered = [("f", n, line) for n, line in enumerate(lines, 1)]
    return replay_for_explain(numbered, ledger, **wanted)


@pytest.fixture
def live_settings(private_redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("REDIS_URL", private_redis_url)
    return Settings()


@pytest.mark.parametrize("deal", sorted({f["deal"] for f in FILLS}))
async def test_a_live_deal_is_told_as_the_offline_one(
    redis: Redis, live_settings: Settings, deal: int
) -> None:
    lines = fill_lines()
    await _settle_in_redis(redis, lines, twice=True)

    live = (await live_deal(live_settings, SERVER, deal)).to_dict()

    offline = explain_deal(_offline(lines, deal=(SERVER, deal)), SERVER, deal).to_dict()
    # The redelivery added no revision: each of its messages is counted as a duplicate instead
    # (deal 1 is an add then an update: 2 messages delivered again; the others 1). Offline
    # never saw them, so only the counts differ.
    revisions = 2 if deal == 1 else 1
    assert (live.pop("duplicates"), live.pop("stale")) == (revisions, 0)
    assert (offline.pop("duplicates"), offline.pop("stale")) == (0, 0)
    assert live == offline
    assert len(live["revisions"]) == revisions


async def test_a_live_deal_states_its_reason(redis: Redis, live_settings: Settings) -> None:
    await _settle_in_redis(redis, fill_lines())
    live = await live_deal(live_settings, SERVER, MIN_HOLD["deal"])
    (revision,) = live.revisions
    # Held 10:00:00 -> 10:02:00 = 120 s against the desk plan's 180 s minimum.
    assert (revision.settlement.outcome, revision.settlement.reasons) == ("credited", ("min_hold",))
    eligibility = next(s for s in revision.steps if s.name == "eligibility")
    assert "min_hold: held 120 s, plan minimum 180 s: FAILED" in eligibility.text


async def test_an_unknown_deal_has_no_revisions(redis: Redis, live_settings: Settings) -> None:
    await _settle_in_redis(redis, fill_lines())
    assert (await live_deal(live_settings, SERVER, 999)).revisions == ()
    assert (await live_deal(live_settings, "other-server", 1)).revisions == ()


@pytest.mark.parametrize("login", [1001, 1003])
async def test_live_login_equals_the_offline_one(
    redis: Redis, live_settings: Settings, login: int
) -> None:
    lines = fill_lines()
    await _settle_in_redis(redis, lines)

    live = (await live_login(live_settings, login)).to_dict()

    offline = explain_login(_offline(lines, login=login), login).to_dict()
    assert live["wallet"] == offline["wallet"]
    assert live["bonuses"] == offline["bonuses"]
    # The index is by close_time (deal 2 closed 10:02, deal 1 at 10:10); offline: first seen.
    assert sorted(live["deals"], key=lambda d: d["deal"]) == offline["deals"]
    if login == 1001:
        # C-A: 0.50 + 0.40 - 0.50 + 0.50 = 0.90 JM USD; the 3.00 JM all covering deal 1.
        assert live["wallet"]["reward_jm"] == {"C-A": "0.90"}
        assert live["wallet"]["jm_balance"] == "0.00"
        assert [d["deal"] for d in live["deals"]] == [2, 1]
        # Deal 1 now stands at its update: 22.50 + 7.50 + 3.00 + 3.00 USD, 0.50 JM USD.
        assert live["deals"][1]["totals"] == {"USD": "36.00", "JMUSD": "0.50"}
    else:
        # One cent lot: 0.01 of the 2 / 2 = 1 standard lot the bonus needs.
        assert (live["bonuses"][0]["std_lots_done"], live["bonuses"][0]["std_lots_needed"]) == (
            "0.01",
            "1",
        )
        assert [d["deal"] for d in live["deals"]] == [4]


async def test_the_journal_keeps_the_fill_bytes_and_an_order(redis: Redis) -> None:
    lines = fill_lines()
    await _settle_in_redis(redis, lines)
    deal = await redis.hgetall(keys.DEAL.format(server=SERVER, deal=1))
    # Deal 1: the add (line 1) then the update (line 5), numbered 1 and 2 as applied.
    assert deal[b"n"] == b"2"
    first, second = orjson.loads(deal[b"j:1"]), orjson.loads(deal[b"j:2"])
    assert orjson.dumps(first["fill"]) == lines[0] and orjson.dumps(second["fill"]) == lines[4]
    assert (first["outcome"], first["reasons"]) == ("credited", [])
    assert f"rev:{second['r']}".encode() in deal

"""`explain --login --live`: the wallet read from Redis after the worker's pipeline settled the
scenario's fills equals the offline explanation's wallet (one engine, two stores)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from agents.explain import live_login
from agents.fills import FillProcessor
from agents.messages import Record
from agents.metrics import Metrics
from agents.settings import Settings
from agents.storage.store import RedisStore
from engine.explain import explain_login, replay_for_explain
from engine.ledger import Ledger
from engine.seed import parse_seed
from tests.explain_scenario import SEED, fill_lines
from tests.factories import TOPICS


@pytest.mark.parametrize("login", [1001, 1003])
async def test_live_wallet_equals_the_offline_one(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch, login: int
) -> None:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(SEED, "explain-seed.yaml"))
    processor = FillProcessor(store, Metrics(), TOPICS)
    lines = fill_lines()
    await processor.process([Record(line, "fills.v1", 0, i, 0) for i, line in enumerate(lines)])
    monkeypatch.setenv("REDIS_URL", private_redis_url)

    live = (await live_login(Settings(), login)).to_dict()

    ledger = Ledger.from_seed(parse_seed(SEED, "explain-seed.yaml"))
    numbered = [("f", n, line) for n, line in enumerate(lines, 1)]
    offline = explain_login(replay_for_explain(numbered, ledger, login=login), login).to_dict()
    assert live["wallet"] == offline["wallet"]
    assert live["bonuses"] == offline["bonuses"]
    assert live["deals_known"] is False and live["deals"] == []
    if login == 1001:
        # C-A: 0.50 + 0.40 - 0.50 + 0.50 = 0.90 JM USD; the 3.00 JM all covering deal 1.
        assert live["wallet"]["reward_jm"] == {"C-A": "0.90"}
        assert live["wallet"]["jm_balance"] == "0.00"
    else:
        # One cent lot: 0.01 of the 2 / 2 = 1 standard lot the bonus needs.
        assert (live["bonuses"][0]["std_lots_done"], live["bonuses"][0]["std_lots_needed"]) == (
            "0.01",
            "1",
        )

"""`rebate-engine admin`: one effective-dated change per command, checked, never retroactive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from agents import admin
from agents.storage import keys
from agents.storage.store import RedisStore
from engine.rules import RuleBook
from engine.seed import parse_seed

SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: std
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}]
  - id: gold
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "12"}]
ibs:
  - {id: IB-M, plan: std}
  - {id: IB-1, plan: std, parent: IB-M, rebate_pct: "20"}
  - {id: IB-2, plan: std}
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-2, ib: IB-1, verified: true}
  - {id: C-3, verified: false}
accounts:
  - {login: 1001, client: C-1, type: standard}
  - {login: 1002, client: C-2, type: standard}
changes:
  - {at: "2024-02-01T00:00:00Z", client: C-2, rebate_status: suspended}
"""
AT = "2024-06-01T00:00:00Z"
T = datetime.fromisoformat(AT)
BEFORE = T - timedelta(seconds=1)

Probe = Callable[[RuleBook, datetime], Any]


def on(login: int, what: Callable[[Any], Any]) -> Probe:
    def probe(book: RuleBook, at: datetime) -> Any:
        attribution = book.resolve(login, at)
        return None if attribution is None else what(attribution)

    return probe


def _client(client: Any) -> Any:
    return client and (client.ib, client.verified)


async def seeded(redis: Redis) -> RedisStore:
    store = RedisStore(redis)
    await store.load_seed(parse_seed(SEED, "admin-seed.yaml"))
    return store


async def run(url: str, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setenv("REDIS_URL", url)
    # These commands change 2024's rules: a window reaching back there (the default 168 h
    # refuses them `too_late`, see test_late.py).
    monkeypatch.setenv("REBATE_CORRECTION_WINDOW_HOURS", str(24 * 365 * 10))
    # The command runs its own event loop (asyncio.run), as it does from the console script.
    return await asyncio.to_thread(admin.main, ["admin", *argv])


async def book_of(store: RedisStore) -> RuleBook:
    return RuleBook(await store.rule_changes())


@pytest.mark.parametrize(
    ("argv", "probe", "before", "after"),
    [
        pytest.param(["set-rebate", "--client", "C-1", "--pct", "35"],
                     on(1001, lambda a: a.client.rebate_pct), None, Decimal(35), id="set-rebate"),
        pytest.param(["suspend-rebate", "--client", "C-1"],
                     on(1001, lambda a: a.client.rebate_status), "active", "suspended",
                     id="suspend-rebate"),
        pytest.param(["resume-rebate", "--client", "C-2"],
                     on(1002, lambda a: a.client.rebate_status), "suspended", "active",
                     id="resume-rebate"),
        pytest.param(["cancel-rebate", "--client", "C-1"],
                     on(1001, lambda a: a.client.rebate_status), "active", "cancelled",
                     id="cancel-rebate"),
        pytest.param(["move-client", "--client", "C-1", "--ib", "IB-2"],
                     on(1001, lambda a: a.ib.id), "IB-1", "IB-2", id="move-client"),
        pytest.param(["move-ib", "--ib", "IB-1", "--parent", "IB-2"],
                     on(1001, lambda a: [u.ib.id for u in a.uplines]), ["IB-M"], ["IB-2"],
                     id="move-ib"),
        pytest.param(["move-account", "--login", "1001", "--client", "C-3"],
                     on(1001, lambda a: (a.client.id, a.ib and a.ib.id)), ("C-1", "IB-1"),
                     ("C-3", None),
                     id="move-account"),
        pytest.param(["set-ib-plan", "--ib", "IB-1", "--plan", "gold"],
                     on(1001, lambda a: a.plan.id), "std", "gold", id="set-ib-plan"),
        pytest.param(["set-ib-rebate", "--ib", "IB-1", "--pct", "25"],
                     on(1001, lambda a: a.ib.rebate_pct), Decimal(20), Decimal(25),
                     id="set-ib-rebate"),
        pytest.param(["set-ib-payout", "--ib", "IB-1", "--payout", "daily", "--hold-hours", "24",
                      "--partner-code", "32071"],
                     on(1001, lambda a: (a.ib.payout, a.ib.hold_hours, a.ib.partner_code)),
                     ("hourly", 0, "IB-1"), ("daily", 24, "32071"), id="set-ib-payout"),
        pytest.param(["add-account", "--login", "1003", "--client", "C-1", "--type", "pro"],
                     on(1003, lambda a: (a.account.type, a.account.live)), None, ("pro", True),
                     id="add-account"),
        pytest.param(["add-account", "--login", "1004", "--client", "C-3", "--type", "standard",
                      "--demo"],
                     on(1004, lambda a: a.account.live), None, False, id="add-demo-account"),
        pytest.param(["add-client", "--client", "C-9", "--ib", "IB-2", "--verified"],
                     lambda b, at: _client(b.get("client", "C-9", at)),
                     None, ("IB-2", True), id="add-client"),
    ],
)  # fmt: skip
async def test_each_command_changes_the_rules_from_at_on_and_not_before(
    redis: Redis,
    private_redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    probe: Probe,
    before: Any,
    after: Any,
) -> None:
    store = await seeded(redis)
    version = int(await redis.get(keys.RULES_VERSION) or 0)
    assert await run(private_redis_url, monkeypatch, *argv, "--at", AT) == 0
    book = await book_of(store)
    assert probe(book, BEFORE) == before
    assert probe(book, T) == after
    assert probe(book, T + timedelta(days=400)) == after
    assert int(await redis.get(keys.RULES_VERSION) or 0) == version + 1  # workers refold


async def test_a_change_that_would_create_an_ib_cycle_is_refused(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    store = await seeded(redis)
    log = await store.rule_changes()
    code = await run(private_redis_url, monkeypatch,
                     "move-ib", "--ib", "IB-M", "--parent", "IB-1", "--at", AT)  # fmt: skip
    assert code == 2
    assert "IB cycle" in capsys.readouterr().err
    assert await store.rule_changes() == log  # nothing written
    assert await run(private_redis_url, monkeypatch,
                     "move-ib", "--ib", "IB-1", "--parent", "IB-1", "--at", AT) == 2  # fmt: skip


async def test_a_cancelled_rebate_cannot_be_resumed(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    store = await seeded(redis)
    assert await run(private_redis_url, monkeypatch, "cancel-rebate", "--client", "C-1",
                     "--at", AT) == 0  # fmt: skip
    log = await store.rule_changes()
    later = "2024-07-01T00:00:00Z"
    for command in ("resume-rebate", "suspend-rebate"):
        assert await run(private_redis_url, monkeypatch, command, "--client", "C-1",
                         "--at", later) == 2  # fmt: skip
        assert "cannot be reactivated" in capsys.readouterr().err
    assert await store.rule_changes() == log
    # Before the cancellation the rebate could still be suspended and resumed.
    assert await run(private_redis_url, monkeypatch, "suspend-rebate", "--client", "C-1",
                     "--at", "2024-05-01T00:00:00Z") == 0  # fmt: skip


async def test_a_cancel_under_the_old_ib_does_not_block_the_client_under_the_new_one(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SPEC 3 r2: the override and its status belong to the (client, IB) pair.
    store = await seeded(redis)
    assert await run(private_redis_url, monkeypatch, "set-rebate", "--client", "C-1",
                     "--pct", "50", "--at", "2024-05-01T00:00:00Z") == 0  # fmt: skip
    assert await run(private_redis_url, monkeypatch, "cancel-rebate", "--client", "C-1",
                     "--at", AT) == 0  # fmt: skip
    moved, resumed = "2024-07-01T00:00:00Z", "2024-08-01T00:00:00Z"
    assert await run(private_redis_url, monkeypatch, "move-client", "--client", "C-1",
                     "--ib", "IB-2", "--at", moved) == 0  # fmt: skip
    probe = on(1001, lambda a: (a.client.ib, a.client.rebate_pct, a.client.rebate_status))
    # The move ended IB-1's 50% and the cancellation: IB-2's default applies.
    assert probe(await book_of(store), datetime.fromisoformat(moved)) == ("IB-2", None, "active")
    for command in (["suspend-rebate"], ["resume-rebate"], ["set-rebate", "--pct", "30"]):
        assert await run(private_redis_url, monkeypatch, *command, "--client", "C-1",
                         "--at", resumed) == 0  # fmt: skip
    after = probe(await book_of(store), datetime.fromisoformat(resumed))
    assert after == ("IB-2", Decimal(30), "active")


async def test_a_cancellation_before_a_scheduled_resume_is_refused(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seeded(redis)
    assert await run(private_redis_url, monkeypatch, "resume-rebate", "--client", "C-2",
                     "--at", AT) == 0  # fmt: skip
    assert await run(private_redis_url, monkeypatch, "cancel-rebate", "--client", "C-2",
                     "--at", "2024-05-01T00:00:00Z") == 2  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set-rebate", "--client", "C-404", "--pct", "10"], "unknown client 'C-404'"),
        (["move-client", "--client", "C-1", "--ib", "IB-404"], "unknown ib 'IB-404'"),
        (["move-ib", "--ib", "IB-1", "--parent", "IB-404"], "unknown ib 'IB-404'"),
        (["move-account", "--login", "4040", "--client", "C-1"], "unknown login '4040'"),
        (["set-ib-plan", "--ib", "IB-1", "--plan", "platinum"], "unknown plan 'platinum'"),
        (["add-account", "--login", "1001", "--client", "C-1", "--type", "pro"], "already"),
        (["add-client", "--client", "C-1"], "already exists"),
        (["set-ib-payout", "--ib", "IB-1"], "needs --payout, --hold-hours or --partner-code"),
        (["show", "--login", "4040"], "unknown login 4040"),
    ],
)
async def test_unknown_references_are_refused_with_exit_2(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str,
) -> None:  # fmt: skip
    store = await seeded(redis)
    log = await store.rule_changes()
    assert await run(private_redis_url, monkeypatch, *argv, "--at", AT) == 2
    assert message in capsys.readouterr().err
    assert await store.rule_changes() == log


async def test_a_reference_that_only_exists_later_is_unknown_at_at(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seeded(redis)
    assert await run(private_redis_url, monkeypatch, "add-client", "--client", "C-7",
                     "--at", AT) == 0  # fmt: skip
    assert await run(private_redis_url, monkeypatch, "move-account", "--login", "1001",
                     "--client", "C-7", "--at", "2024-05-01T00:00:00Z") == 2  # fmt: skip


async def test_show_prints_the_attribution_in_force(
    redis: Redis, private_redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await seeded(redis)
    assert await run(private_redis_url, monkeypatch, "set-rebate", "--client", "C-1",
                     "--pct", "35", "--at", AT) == 0  # fmt: skip
    capsys.readouterr()
    assert await run(private_redis_url, monkeypatch, "show", "--login", "1001", "--at", AT) == 0
    shown = capsys.readouterr().out
    assert "IB-1 (L1), plan std" in shown
    assert "35%" in shown
    assert "IB-M (L2)" in shown


def test_admin_needs_redis_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert admin.main(["admin", "show", "--login", "1001"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


def test_bad_at_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        admin.main(["admin", "suspend-rebate", "--client", "C-1", "--at", "2024-06-01 10:00"])
    assert exit_.value.code == 2

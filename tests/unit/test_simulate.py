"""The bridge simulator: deterministic, schema-valid, and a realistic mix."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness.simulate.generator import (
    SERVERS,
    SYMBOLS,
    account_profile,
    generate_fills,
    generate_seed,
)
from schemas import validate

START = datetime(2024, 6, 3, 7, 30, tzinfo=UTC)
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # of the simulated ticket counters


def run(
    seed_value: int = 7, accounts: int = 120, count: int = 6000
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rng = random.Random(seed_value)
    seed = generate_seed(accounts, rng)
    return seed, list(generate_fills(seed, rng, count, START))


@pytest.fixture(scope="module")
def stream() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return run()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def adds(fills: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in fills if f["event"] == "add"]


# -- determinism and purity --------------------------------------------------------------------


def test_same_seed_same_output() -> None:
    assert run(3, 40, 1500) == run(3, 40, 1500)


def test_other_seed_other_output() -> None:
    assert run(3, 40, 200)[1] != run(4, 40, 200)[1]


def test_global_random_state_is_untouched() -> None:
    random.seed(99)
    expected = random.random()
    random.seed(99)
    run(5, 20, 300)
    assert random.random() == expected


def test_account_habits_depend_on_the_login_only() -> None:
    assert account_profile(1_000_123, "standard") == account_profile(1_000_123, "standard")


def test_fills_are_lazy_and_counted() -> None:
    rng = random.Random(1)
    seed = generate_seed(10, rng)
    it = generate_fills(seed, rng, 5, START)
    assert next(it)["schema"] == "fill.v1"
    assert len(list(it)) == 4
    assert list(generate_fills(seed, rng, 0, START)) == []


def test_naive_start_is_refused() -> None:
    rng = random.Random(1)
    with pytest.raises(ValueError, match="timezone"):
        generate_fills(generate_seed(3, rng), rng, 1, datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="accounts"):
        generate_fills({"accounts": []}, rng, 1, START)


# -- schema validity ------------------------------------------------------------------------


@pytest.mark.parametrize("accounts", [1, 2, 5, 9, 60, 800])
def test_seed_is_valid(accounts: int) -> None:
    seed = generate_seed(accounts, random.Random(accounts))
    validate("seed.v1", seed)
    assert len(seed["accounts"]) == accounts
    assert len({a["login"] for a in seed["accounts"]}) == accounts


@pytest.mark.parametrize(("seed_value", "accounts"), [(1, 1), (2, 7), (3, 250)])
def test_every_fill_is_valid(seed_value: int, accounts: int) -> None:
    for fill in run(seed_value, accounts, 2500)[1]:
        validate("fill.v1", fill)


def test_seed_references_resolve(stream: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    seed, _ = stream
    plans = {p["id"] for p in seed["plans"]}
    ibs = {i["id"] for i in seed["ibs"]}
    clients = {c["id"] for c in seed["clients"]}
    assert all(i["plan"] in plans and i.get("parent", next(iter(ibs))) in ibs for i in seed["ibs"])
    assert all(c.get("ib", next(iter(ibs))) in ibs for c in seed["clients"])
    assert all(a["client"] in clients for a in seed["accounts"])
    assert any("client" in i for i in seed["ibs"]), "one IB trades on its own account"
    levels = {i["id"]: 1 + ("parent" in i) for i in seed["ibs"]}
    assert any(i.get("parent") in levels and levels[i["parent"]] == 2 for i in seed["ibs"])


def test_plans_cover_every_kind_of_rule(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    seed, _ = stream
    rules = [r for p in seed["plans"] for r in p["rules"]]
    for method in ("per_lot_usd", "spread_pct", "commission_pct"):
        assert any(method in r for r in rules)
    named = {s for r in rules for s in r["symbols"]}
    assert {"forex", "metals", "*"} <= named
    assert {"forex", "metals", "indices"} <= set(seed["symbols"]["groups"])


# -- the mix ----------------------------------------------------------------------------------


def test_platforms_currencies_and_account_kinds(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    seed, fills = stream
    assert {f["platform"] for f in fills} == {"mt4", "mt5"}
    currencies = Counter(f["currency"] for f in fills)
    assert currencies["USC"] > 0 and currencies["EUR"] > 0 and currencies["USD"] > 0
    assert all("usd_rate" in f for f in fills if f["currency"] == "EUR")
    demo = {a["login"] for a in seed["accounts"] if a.get("live") is False}
    assert demo and any(f["login"] in demo for f in fills)
    known = {a["login"] for a in seed["accounts"]}
    assert any(f["login"] not in known for f in fills), "accounts unknown to the seed trade too"


def test_volumes_in_platform_units(stream: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, fills = stream
    mt4 = [f["volume"] for f in fills if f["platform"] == "mt4"]
    mt5 = [f["volume"] for f in fills if f["platform"] == "mt5"]
    assert min(mt4) >= 1 and max(mt4) <= 50_000
    assert min(mt5) >= 100 and all(v % 100 == 0 for v in mt5)
    assert len(set(mt4)) > 50, "lognormal, not a handful of sizes"


def test_holding_times_from_seconds_to_days(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    holds = [at(f["close_time"]) - at(f["open_time"]) for f in fills if f["entry"] != "in"]
    short = sum(h < timedelta(seconds=180) for h in holds)
    long = sum(h > timedelta(days=1) for h in holds)
    assert 0.05 < short / len(holds) < 0.6, "min_hold_seconds rules bite sometimes"
    assert long > 0
    assert all(h >= timedelta(0) for h in holds)


def test_entries_events_and_commissions(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    seed, fills = stream
    entries = Counter(f["entry"] for f in fills)
    assert entries["out"] > entries["in"] > 0
    assert entries["inout"] > 0 and entries["out_by"] > 0
    events = Counter(f["event"] for f in fills)
    assert events["update"] > 0 and events["delete"] > 0
    assert events["update"] + events["delete"] < 0.02 * len(fills)
    types = {a["login"]: a["type"] for a in seed["accounts"]}
    charged = {types.get(f["login"]) for f in fills if f["commission"] != "0.00"}
    assert charged == {"raw_spread", "pro"}
    assert any("spread_points" not in f for f in fills)
    assert any("point_value" not in f for f in fills)


def test_symbols_are_known_symbols_with_the_seed_suffixes(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    seed, fills = stream
    names = {s.name for s in SYMBOLS}
    suffixes = ["", *seed["symbols"]["suffixes"]]
    for f in fills:
        assert any(
            f["symbol"].removesuffix(x) in names for x in suffixes if f["symbol"].endswith(x)
        )
    assert len({f["symbol"] for f in fills}) > 15


def test_symbol_specs_are_those_of_real_servers() -> None:
    spec = {s.name: s for s in SYMBOLS}
    assert (spec["EURUSD"].digits, str(spec["EURUSD"].contract_size)) == (5, "100000")
    assert spec["EURUSD"].spread == (8, 15)
    assert (spec["XAUUSD"].digits, str(spec["XAUUSD"].contract_size)) == (2, "100")
    assert spec["USDJPY"].digits == 3


# -- ordering and tickets -----------------------------------------------------------------------


def test_add_events_in_close_time_order(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    times = [at(f["close_time"]) for f in adds(fills)]
    assert times == sorted(times)
    assert times[0] >= START


def test_mt5_deal_tickets_rise_per_server(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    last: dict[str, int] = {}
    for f in adds(fills):
        if f["platform"] == "mt5":
            assert f["deal"] > last.get(f["server"], 0)
            assert f["position"] <= f["deal"]
            last[f["server"]] = f["deal"]
    assert len(last) >= 2


def test_mt4_tickets_are_order_tickets(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    mt4 = [f for f in adds(fills) if f["platform"] == "mt4"]
    assert all(f["deal"] == f["position"] for f in mt4)
    assert all(f["deal"] < 2**31 for f in mt4), "MT4 tickets are 32-bit"
    # Given at open from the server's counter, so closes arrive out of ticket order, as in
    # real MT4 histories.
    servers = {s.name: s for s in SERVERS}
    for f in mt4:
        counter = servers[f["server"]].ticket_at(
            (at(f["open_time"]) - EPOCH) // timedelta(milliseconds=1)
        )
        assert 0 <= f["deal"] - counter < 1000
    deals = [f["deal"] for f in mt4 if f["server"] == "mt4-live-1"]
    assert deals != sorted(deals)


def test_deal_tickets_are_unique_per_server(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    keys = [(f["server"], f["deal"]) for f in adds(fills)]
    assert len(keys) == len(set(keys))
    assert {f["server"] for f in fills} <= {s.name for s in SERVERS}


def test_corrections_refer_to_earlier_deals(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    deleted: set[tuple[str, int]] = set()
    for f in fills:
        key = (f["server"], f["deal"])
        if f["event"] == "add":
            seen[key] = f
            continue
        assert key in seen and key not in deleted
        assert (f["close_time"], f["login"], f["position"]) == (
            seen[key]["close_time"],
            seen[key]["login"],
            seen[key]["position"],
        )
        if f["event"] == "delete":
            deleted.add(key)


def test_in_deals_are_followed_by_their_close(
    stream: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, fills = stream
    opened = {(f["server"], f["position"]): f for f in fills if f["entry"] == "in"}
    assert all(
        f["platform"] == "mt5" and f["open_time"] == f["close_time"] for f in opened.values()
    )
    closed = [
        f for f in adds(fills) if f["entry"] != "in" and (f["server"], f["position"]) in opened
    ]
    assert closed
    for f in closed:
        assert f["open_time"] == opened[(f["server"], f["position"])]["open_time"]

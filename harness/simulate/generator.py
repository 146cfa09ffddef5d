"""Bridge simulator: a seed.v1 book of IBs, clients and accounts, and the fill.v1 stream their
trading would produce on MT4/MT5 servers.

Pure and deterministic: no I/O, no clock, no global random state. Everything random comes from
the ``random.Random`` passed in, plus per-account habits derived from the login alone, so the
same seed and generator state always give the same output. The Kafka publisher and the
``rebate-engine simulate`` command wrap this module.

Conventions the generated seed and fills share (a hand-written seed works too: logins outside
these ranges trade on ``mt4-live-1`` in USD):

* the login range decides the server, its platform and currency (:data:`SERVERS`); accounts of
  type ``standard_cent`` are in US cents (``USC``); ``mt5-live-eu`` holds EUR accounts and
  ``mt5-demo-1`` the demo accounts (``live: false``);
* tickets come from one counter per server that also counts deals we never see, so they grow
  with time: MT5 deal tickets of ``add`` events rise strictly in stream order; an MT4 fill
  carries its order ticket, given when the position opened, so closes arrive out of ticket
  order, as in the real MT4 histories;
* ``add`` events come in ``close_time`` order; ``update``/``delete`` events re-send an earlier
  deal (same ticket and close_time).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

__all__ = [
    "SERVERS",
    "SYMBOLS",
    "AccountProfile",
    "Server",
    "SymbolSpec",
    "account_profile",
    "generate_fills",
    "generate_seed",
]

_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_DEFAULT_EFFECTIVE_FROM = datetime(2024, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_CENT = Decimal("0.01")

# Stream mix. Per emitted fill, unless noted.
_P_IN = 0.06  # an MT5 position opens with its "in" deal in the stream (its close follows later)
_P_UPDATE = 0.004  # a dealer corrects an earlier deal
_P_DELETE = 0.002  # a dealer deletes an earlier deal
_P_UNKNOWN_LOGIN = 0.002  # an account opened after the seed was loaded
_TRADES_PER_ACCOUNT_DAY = 12.0
_RECENT = 2000  # earlier deals a correction can refer to


@dataclass(frozen=True, slots=True)
class Server:
    """A trade server: its login range, platform, account currency and ticket counter."""

    name: str
    platform: str
    first_login: int
    last_login: int
    currency: str
    live: bool
    first_ticket: int
    tickets_per_second: int
    """Deals per second on the whole server, most of them from accounts we never see."""

    def ticket_at(self, ms: int) -> int:
        """The server's ticket counter at ``ms`` milliseconds after 2020-01-01 UTC."""
        return max(1, self.first_ticket + ms * self.tickets_per_second // 1000)


# MT4 tickets are 32-bit: at these rates mt4 counters stay below 2^31 until the late 2030s.
SERVERS: tuple[Server, ...] = (
    Server("mt4-live-1", "mt4", 1_000_000, 1_999_999, "USD", True, 40_000_000, 3),
    Server("mt4-live-2", "mt4", 2_000_000, 2_999_999, "USD", True, 75_000_000, 2),
    Server("mt5-live-1", "mt5", 50_000_000, 58_999_999, "USD", True, 300_000_000, 40),
    Server("mt5-live-eu", "mt5", 59_000_000, 59_999_999, "EUR", True, 120_000_000, 5),
    Server("mt5-demo-1", "mt5", 90_000_000, 99_999_999, "USD", False, 900_000_000, 60),
)
_SERVER = {s.name: s for s in SERVERS}


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Contract specification and market behaviour of one symbol (values as on real servers)."""

    name: str
    group: str
    digits: int
    contract_size: Decimal
    price: Decimal
    """Typical price, where the simulated market starts and reverts to."""
    quote: str
    """Quote currency: its USD value turns points into money."""
    spread: tuple[int, int]
    """Typical spread in points on standard accounts."""
    daily_points: int
    """Typical one-day move in points (one standard deviation)."""
    swap_per_lot: tuple[Decimal, Decimal]
    """USD per lot per night, long and short."""
    popularity: int
    commission: bool
    """Whether raw/pro accounts pay commission on it (forex and metals) or not (CFDs)."""


def _sym(
    name: str,
    group: str,
    digits: int,
    contract: str,
    price: str,
    quote: str,
    spread: tuple[int, int],
    daily: int,
    swap: tuple[str, str],
    popularity: int,
) -> SymbolSpec:
    return SymbolSpec(
        name, group, digits, Decimal(contract), Decimal(price), quote, spread, daily,
        (Decimal(swap[0]), Decimal(swap[1])), popularity, group in ("forex", "metals"),
    )  # fmt: skip


SYMBOLS: tuple[SymbolSpec, ...] = (
    _sym("EURUSD", "forex", 5, "100000", "1.08500", "USD", (8, 15), 700, ("-7.2", "2.1"), 30),
    _sym("GBPUSD", "forex", 5, "100000", "1.27000", "USD", (10, 20), 900, ("-5.5", "-1.0"), 12),
    _sym("AUDUSD", "forex", 5, "100000", "0.66000", "USD", (8, 16), 600, ("-3.1", "-1.2"), 6),
    _sym("USDJPY", "forex", 3, "100000", "150.000", "JPY", (10, 18), 900, ("12.0", "-25.0"), 14),
    _sym("USDCHF", "forex", 5, "100000", "0.88000", "CHF", (12, 20), 600, ("6.0", "-14.0"), 4),
    _sym("USDCAD", "forex", 5, "100000", "1.36000", "CAD", (14, 22), 700, ("-2.0", "-5.5"), 4),
    _sym("EURJPY", "forex", 3, "100000", "162.000", "JPY", (15, 25), 1100, ("5.0", "-18.0"), 4),
    _sym("GBPJPY", "forex", 3, "100000", "190.000", "JPY", (20, 35), 1500, ("8.0", "-24.0"), 5),
    _sym("EURGBP", "forex", 5, "100000", "0.85500", "GBP", (10, 18), 350, ("-6.0", "0.5"), 2),
    _sym("XAUUSD", "metals", 2, "100", "2000.00", "USD", (20, 40), 2500, ("-35.0", "18.0"), 20),
    _sym("XAGUSD", "metals", 3, "5000", "23.000", "USD", (20, 35), 500, ("-8.0", "2.0"), 3),
    _sym("US30", "indices", 1, "1", "38000.0", "USD", (20, 40), 3000, ("-6.0", "-2.0"), 4),
    _sym("US500", "indices", 2, "1", "4800.00", "USD", (40, 70), 4000, ("-0.8", "-0.3"), 3),
    _sym("NAS100", "indices", 2, "1", "17000.00", "USD", (100, 200), 20000, ("-3.0", "-1.0"), 5),
    _sym("GER40", "indices", 1, "1", "17000.0", "EUR", (10, 20), 2000, ("-2.5", "-1.5"), 2),
    _sym("XTIUSD", "energies", 2, "1000", "75.00", "USD", (3, 6), 150, ("-4.0", "-1.0"), 2),
    _sym("XBRUSD", "energies", 2, "1000", "80.00", "USD", (3, 6), 150, ("-4.0", "-1.0"), 1),
)
# USD value of one unit of each currency (reference rates; the EUR rate jitters per fill).
_USD_PER = {
    "USD": Decimal(1),
    "USC": Decimal("0.01"),
    "EUR": Decimal("1.085"),
    "GBP": Decimal("1.27"),
    "JPY": Decimal(1) / Decimal(150),
    "CHF": Decimal(1) / Decimal("0.88"),
    "CAD": Decimal(1) / Decimal("1.36"),
}
_SUFFIX = {  # (server, account type) -> symbol suffix; every one is in the seed's suffixes
    ("mt4-live-1", "standard_cent"): "micro",
    ("mt4-live-2", "standard"): "-std",
    ("mt4-live-2", "standard_cent"): "micro",
    ("mt5-live-1", "standard_cent"): "micro",
    ("mt5-live-1", "raw_spread"): ".raw",
    ("mt5-live-1", "pro"): ".pro",
    ("mt5-live-eu", "raw_spread"): ".raw",
    ("mt5-demo-1", "standard"): ".m",
}
_COMMISSION_USD_PER_LOT = {"raw_spread": Decimal(7), "pro": Decimal(4)}  # round turn
_SPREAD_FACTOR = {"pro": 0.6, "raw_spread": 0.1}


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """Where an account trades and its habits: stable for a login, whatever the stream seed."""

    login: int
    server: Server
    account_type: str
    currency: str
    live: bool
    style: str
    """scalper, intraday or swing: decides holding times."""
    median_lots: float
    symbols: tuple[SymbolSpec, ...]
    symbol_weights: tuple[int, ...]
    uses_ea: bool
    activity: float
    """Relative share of the stream's fills."""

    @property
    def suffix(self) -> str:
        return _SUFFIX.get((self.server.name, self.account_type), "")


def account_profile(login: int, account_type: str, *, live: bool | None = None) -> AccountProfile:
    """The server (by login range), currency and trading habits of an account."""
    server = next((s for s in SERVERS if s.first_login <= login <= s.last_login), SERVERS[0])
    currency = "USC" if account_type == "standard_cent" else server.currency
    habits = random.Random(f"rebate-engine/simulate/account/{login}")
    style = habits.choices(
        ("scalper", "intraday", "swing"),
        weights=(5, 3, 2) if account_type in ("raw_spread", "pro") else (2, 5, 3),
    )[0]
    median = {"standard_cent": 2.0, "standard": 0.3, "pro": 1.0, "raw_spread": 2.0}.get(
        account_type, 0.5
    )
    picked = habits.sample(SYMBOLS, k=habits.randint(1, 5), counts=[s.popularity for s in SYMBOLS])
    symbols = tuple(dict.fromkeys(picked))  # sample with counts may repeat a symbol
    return AccountProfile(
        login=login,
        server=server,
        account_type=account_type,
        currency=currency,
        live=server.live if live is None else live,
        style=style,
        median_lots=median * math.exp(habits.gauss(0, 0.7)),
        symbols=symbols,
        symbol_weights=tuple(habits.randint(1, 10) * s.popularity for s in symbols),
        uses_ea=habits.random() < 0.2,
        activity=math.exp(habits.gauss(0, 1.0)) * (1.0 if server.live else 0.3),
    )


# -- seed -------------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pick_server(rng: random.Random) -> Server:
    return rng.choices(SERVERS[:3], weights=(35, 20, 45))[0]


def _pick_type(rng: random.Random, server: Server) -> str:
    types: tuple[str, ...]
    weights: tuple[int, ...]
    if server.platform == "mt4":
        types, weights = ("standard", "standard_cent", "pro"), (45, 35, 20)
    elif server.name == "mt5-live-eu":
        types, weights = ("standard", "pro", "raw_spread"), (40, 30, 30)
    else:
        types, weights = ("standard", "pro", "raw_spread", "standard_cent"), (35, 25, 35, 5)
    return rng.choices(types, weights=weights)[0]


def _plans() -> list[dict[str, Any]]:
    def rules(fx: str, metals: str, other: str, cent: str, pro: str, raw: str) -> list[Any]:
        return [
            {"id": "gold", "account_types": ["standard"], "symbols": ["XAUUSD"],
             "per_lot_usd": str(Decimal(metals) + 3)},
            {"id": "metals", "account_types": ["standard", "pro"], "symbols": ["metals"],
             "per_lot_usd": metals},
            {"id": "fx", "account_types": ["standard"], "symbols": ["forex"], "per_lot_usd": fx},
            {"id": "cfd", "account_types": ["standard"], "symbols": ["*"], "per_lot_usd": other},
            {"id": "cent", "account_types": ["standard_cent"], "symbols": ["*"],
             "per_lot_usd": cent},
            {"id": "pro-fx", "account_types": ["pro"], "symbols": ["forex"], "spread_pct": pro,
             "max_usd_per_lot": "10"},
            {"id": "pro", "account_types": ["pro"], "symbols": ["*"], "spread_pct": "25",
             "max_usd_per_lot": "10"},
            {"id": "raw", "account_types": ["raw_spread"], "symbols": ["*"],
             "commission_pct": raw},
        ]  # fmt: skip

    return [
        {
            "id": "std",
            "rules": rules("8", "15", "2", "0.08", "40", "30"),
            "upline_override_pct": ["20", "10"],
            "min_hold_seconds": 180,
            "min_points": 30,
        },
        {
            "id": "vip",
            "rules": rules("10", "20", "3", "0.10", "50", "40"),
            "upline_override_pct": ["15", "5", "2"],
            "min_hold_seconds": 60,
            "min_points": 10,
            "exclude_self_trades": True,
        },
        {
            "id": "raw",
            "rules": rules("6", "12", "1.5", "0.05", "30", "35"),
            "upline_override_pct": ["10"],
            "min_hold_seconds": 120,
            "min_points": 0,
            "exclude_self_trades": False,
        },
    ]


def generate_seed(
    accounts: int,
    rng: random.Random,
    *,
    effective_from: datetime = _DEFAULT_EFFECTIVE_FROM,
) -> dict[str, Any]:
    """A seed.v1 dict for ``accounts`` accounts.

    Three IB levels on plans std/vip/raw (per-lot, spread-share and commission-share rules over
    forex, metals, indices and energies), one IB trading on its own account, clients with and
    without an IB and some rebate overrides, accounts on MT4 and MT5 (standard, cent, pro, raw
    spread), one EUR account and a few demo accounts once there are enough accounts, plus
    starting wallets, bonuses and a few effective-dated changes.
    """
    if accounts < 1:
        raise ValueError("accounts must be at least 1")
    if effective_from.tzinfo is None:
        raise ValueError("effective_from must be timezone-aware")
    start = _iso(effective_from)

    # IB tree: masters, their sub-IBs, and sub-sub-IBs.
    n_ibs = max(3, min(60, accounts // 8))
    n_masters = max(1, n_ibs // 6)
    ibs: list[dict[str, Any]] = []
    for n in range(n_ibs):
        ib: dict[str, Any] = {"id": f"IB-{n + 1:03d}"}
        if n < n_masters:
            ib["plan"] = "vip"
            ib["rebate_pct"] = "0"
        else:
            ib["plan"] = rng.choices(("std", "vip", "raw"), weights=(6, 2, 2))[0]
            level2 = ibs[:n_masters]
            level3 = ibs[n_masters : n_masters + (n_ibs - n_masters) // 2]
            parents = level2 if n < n_masters + (n_ibs - n_masters) // 2 else level3
            ib["parent"] = rng.choice(parents)["id"]
            ib["rebate_pct"] = rng.choices(("0", "10", "20", "25", "30", "50"), (3, 2, 4, 2, 2, 1))[
                0
            ]
        ibs.append(ib)
    referrers = ibs[n_masters:] or ibs

    # Servers and types, making sure the mix has what the engine must handle.
    slots: list[tuple[Server, str, bool]] = []
    for _ in range(accounts):
        server = _pick_server(rng)
        slots.append((server, _pick_type(rng, server), True))
    fixed = [
        (_SERVER["mt4-live-1"], "standard_cent", True),
        (_SERVER["mt5-live-1"], "raw_spread", True),
        (_SERVER["mt4-live-2"], "standard", True),
        (_SERVER["mt5-live-eu"], "standard", True),
        (_SERVER["mt5-demo-1"], "standard", False),
    ]
    slots[: len(fixed)] = fixed[: min(accounts, len(fixed))]
    for n in range(len(fixed), accounts):
        if rng.random() < 0.04:
            slots[n] = (_SERVER["mt5-demo-1"], rng.choice(("standard", "pro", "raw_spread")), False)
    rng.shuffle(slots)

    next_login = {s.name: s.first_login + rng.randrange(1000, 5000) for s in SERVERS}
    clients: list[dict[str, Any]] = []
    account_rows: list[dict[str, Any]] = []
    client: dict[str, Any] = {}
    for server, account_type, live in slots:
        if not clients or rng.random() < 0.75:  # a new client, else another account of the last
            client = {"id": f"C-{len(clients) + 1:05d}"}
            if rng.random() < 0.85:
                client["ib"] = rng.choice(referrers)["id"]
            client["verified"] = rng.random() < 0.8
            if rng.random() < 0.1:
                client["rebate_pct"] = rng.choice(("0", "30", "50", "75"))
                client["rebate_status"] = rng.choices(
                    ("active", "suspended", "cancelled"), (7, 2, 1)
                )[0]
            clients.append(client)
        login = next_login[server.name]
        next_login[server.name] += rng.randint(1, 40)
        row: dict[str, Any] = {"login": login, "client": client["id"], "type": account_type}
        if not live or rng.random() < 0.3:
            row["live"] = live
        account_rows.append(row)

    # One IB trades on its own account: self-trades.
    own = referrers[0]
    own_client = next((c for c in clients if c.get("ib") == own["id"]), None)
    if own_client is not None:
        own["client"] = own_client["id"]

    verified = {c["id"] for c in clients if c.get("verified")}
    live_rows = [a for a in account_rows if a.get("live", True)]
    wallets: list[dict[str, Any]] = []
    for c in clients:
        if c["id"] in verified and rng.random() < 0.15:
            wallets.append({"client": c["id"], "reward_jm": f"{rng.randint(10, 500)}.00"})
    for a in live_rows:
        if a["client"] in verified and rng.random() < 0.06:
            wallets.append({"login": a["login"], "jm_allocated": f"{rng.randint(5, 200)}.00",
                            "allocated_at": start})  # fmt: skip
    bonuses = [
        {"login": a["login"], "bonus_id": f"B-{n + 1:04d}",
         "amount_usd": rng.choice(("100", "250", "500", "1000")), "granted_at": start}
        for n, a in enumerate(a for a in live_rows if rng.random() < 0.05)
    ]  # fmt: skip

    changes: list[dict[str, Any]] = []
    day = timedelta(days=1)
    if clients:
        changes.append({"at": _iso(effective_from + 30 * day), "client": rng.choice(clients)["id"],
                        "rebate_pct": "30"})  # fmt: skip
    if len(ibs) > n_masters:
        changes.append({"at": _iso(effective_from + 60 * day), "ib": rng.choice(referrers)["id"],
                        "plan": "vip"})  # fmt: skip
    standard = [a for a in live_rows if a["type"] == "standard"]
    if standard:
        changes.append({"at": _iso(effective_from + 90 * day),
                        "account": rng.choice(standard)["login"], "type": "pro"})  # fmt: skip

    groups: dict[str, list[str]] = {}
    for spec in SYMBOLS:
        groups.setdefault(spec.group, []).append(spec.name)
    return {
        "effective_from": start,
        "loyalty": {"accrual_pct": "10", "coverage_pct": "50", "exclude_ib_referred": False},
        "symbols": {"suffixes": sorted(set(_SUFFIX.values())), "groups": groups},
        "plans": _plans(),
        "ibs": ibs,
        "clients": clients,
        "accounts": account_rows,
        "wallets": wallets,
        "bonuses": bonuses,
        "changes": changes,
    }


# -- fills ------------------------------------------------------------------------------------


def _ms(t: datetime) -> int:
    return (t - _EPOCH) // _MS


def _time(ms: int, platform: str) -> str:
    t = _EPOCH + ms * _MS
    head = t.strftime("%Y-%m-%dT%H:%M:%S")
    # MT4 servers keep whole seconds; MT5 has milliseconds.
    frac = "000" if platform == "mt4" else f"{ms % 1000:03d}"
    return f"{head}.{frac}Z"


def _money(x: Decimal) -> str:
    cents = x.quantize(_CENT, ROUND_HALF_EVEN)
    return f"{cents.copy_abs() if cents.is_zero() else cents:f}"  # never "-0.00"


def _price(points: int, digits: int) -> str:
    return f"{Decimal(points).scaleb(-digits):.{digits}f}"


@dataclass(slots=True)
class _Position:
    profile: AccountProfile
    spec: SymbolSpec
    side: str
    volume: int
    open_ms: int
    close_ms: int
    open_points: int
    spread_points: int
    position: int = 0
    seq: int = 0


@dataclass(slots=True)
class _State:
    tickets_used: dict[str, set[int]] = field(default_factory=dict)
    last_deal: dict[str, int] = field(default_factory=dict)
    mids: dict[str, tuple[int, float]] = field(default_factory=dict)  # symbol -> (ms, points)
    recent: list[dict[str, Any]] = field(default_factory=list)
    pending: list[tuple[int, int, _Position]] = field(default_factory=list)
    seq: int = 0
    last_ms: int = 0


class _Simulator:
    def __init__(self, seed: Mapping[str, Any], rng: random.Random, start: datetime) -> None:
        rows = seed.get("accounts") or []
        if not rows:
            raise ValueError("the seed has no accounts to trade")
        self.rng = rng
        self.profiles = [
            account_profile(int(a["login"]), str(a["type"]), live=bool(a.get("live", True)))
            for a in rows
        ]
        self.cum_weights = _cumulative([p.activity for p in self.profiles])
        self.known = {p.login for p in self.profiles}
        fills_per_day = _TRADES_PER_ACCOUNT_DAY * len(self.profiles)
        self.mean_gap_ms = max(1.0, 86_400_000 / fills_per_day)
        self.state = _State(last_ms=_ms(start))

    # -- the stream ----------------------------------------------------------------------

    def run(self, count: int) -> Iterator[dict[str, Any]]:
        rng, state = self.rng, self.state
        for _ in range(count):
            now = state.last_ms + 1 + int(rng.expovariate(1.0 / self.mean_gap_ms))
            if state.pending and state.pending[0][0] <= now:
                _, _, position = heapq.heappop(state.pending)
                yield self._close(position, max(position.close_ms, state.last_ms + 1))
                continue
            roll = rng.random()
            if roll < _P_UPDATE + _P_DELETE and state.recent:
                yield self._correction(delete=roll < _P_DELETE)
                continue
            profile = self._pick_account()
            if profile.server.platform == "mt4":
                now = -(-now // 1000) * 1000  # MT4 keeps whole seconds
            elif rng.random() < _P_IN:
                yield self._open(profile, now)
                continue
            position = self._position(profile, now)
            yield self._close(position, now)

    def _pick_account(self) -> AccountProfile:
        rng = self.rng
        if rng.random() < _P_UNKNOWN_LOGIN:
            server = SERVERS[0]
            login = server.last_login - rng.randrange(50_000)
            if login not in self.known:
                return account_profile(login, "standard")
        return rng.choices(self.profiles, cum_weights=self.cum_weights)[0]

    # -- positions -----------------------------------------------------------------------

    def _position(self, profile: AccountProfile, close_ms: int) -> _Position:
        """A position that closes at ``close_ms`` and opened some time before."""
        rng = self.rng
        hold_ms = self._hold_ms(profile.style)
        spec = rng.choices(profile.symbols, weights=profile.symbol_weights)[0]
        open_ms = close_ms - hold_ms
        pos = _Position(
            profile=profile,
            spec=spec,
            side=rng.choice(("buy", "sell")),
            volume=self._volume(profile),
            open_ms=open_ms,
            close_ms=close_ms,
            open_points=max(1, self._mid(spec, close_ms) - self._move(spec, hold_ms)),
            spread_points=self._spread(profile, spec),
        )
        server = profile.server
        pos.position = self._ticket(server, server.ticket_at(open_ms))
        return pos

    def _open(self, profile: AccountProfile, now: int) -> dict[str, Any]:
        """An MT5 "in" deal now; the position's close is scheduled and comes later."""
        pos = self._position(profile, now)
        hold = pos.close_ms - pos.open_ms
        pos.open_ms, pos.close_ms = now, now + hold
        pos.open_points = self._mid(pos.spec, now)
        server = profile.server
        self.state.tickets_used[server.name].discard(pos.position)
        deal = self._next_deal(server, now)
        pos.position = deal
        self.state.seq += 1
        pos.seq = self.state.seq
        heapq.heappush(self.state.pending, (pos.close_ms, pos.seq, pos))
        self.state.last_ms = now
        return self._fill(pos, deal=deal, entry="in", close_ms=now, close_points=pos.open_points)

    def _close(self, pos: _Position, now: int) -> dict[str, Any]:
        rng, server = self.rng, pos.profile.server
        if server.platform == "mt4":
            deal = pos.position  # the order ticket
            entry = "out_by" if rng.random() < 0.03 else "out"
        else:
            deal = self._next_deal(server, now, above=pos.position)
            entry = rng.choices(("out", "inout", "out_by"), weights=(90, 5, 5))[0]
        close_points = self._mid(pos.spec, now)
        self.state.last_ms = now
        fill = self._fill(pos, deal=deal, entry=entry, close_ms=now, close_points=close_points)
        self._remember(fill)
        return fill

    def _correction(self, *, delete: bool) -> dict[str, Any]:
        """A dealer's update or delete of an earlier deal (same ticket, same close_time)."""
        rng, recent = self.rng, self.state.recent
        index = rng.randrange(len(recent))
        fill = dict(recent[index])
        fill["event"] = "delete" if delete else "update"
        if delete:
            recent.pop(index)
            return fill
        fill["reason"] = "dealer"
        what = rng.choice(("commission", "volume", "price"))
        if what == "commission" and Decimal(fill["commission"]) != 0:
            fill["commission"] = _money(Decimal(fill["commission"]) / 2)
        elif what == "volume" and fill["volume"] > 1:
            unit = 1 if fill["platform"] == "mt4" else 100
            volume = max(unit, fill["volume"] // 2 // unit * unit)
            share = Decimal(volume) / Decimal(fill["volume"])
            for money in ("commission", "swap", "profit"):
                fill[money] = _money(Decimal(fill[money]) * share)
            fill["volume"] = volume
        else:
            digits, step = fill["digits"], rng.choice((-3, -1, 1, 3))
            close = Decimal(fill["close_price"]).scaleb(digits) + step
            fill["close_price"] = _price(max(0, int(close)), digits)
            if "point_value" in fill:
                lots = Decimal(fill["volume"]).scaleb(-2 if fill["platform"] == "mt4" else -4)
                sign = 1 if fill["side"] == "buy" else -1
                delta = sign * step * Decimal(fill["point_value"]) * lots
                fill["profit"] = _money(Decimal(fill["profit"]) + delta)
        recent[index] = fill
        return fill

    def _remember(self, fill: dict[str, Any]) -> None:
        recent = self.state.recent
        if len(recent) >= _RECENT:
            recent.pop(self.rng.randrange(len(recent)))
        recent.append(fill)

    # -- the message -----------------------------------------------------------------------

    def _fill(
        self, pos: _Position, *, deal: int, entry: str, close_ms: int, close_points: int
    ) -> dict[str, Any]:
        rng, profile, spec = self.rng, pos.profile, pos.spec
        server = profile.server
        platform = server.platform
        lots = Decimal(pos.volume).scaleb(-2 if platform == "mt4" else -4)
        usd_rate = _USD_PER[profile.currency]
        if profile.currency == "EUR":
            usd_rate = (usd_rate * Decimal(1 + rng.gauss(0, 0.003))).quantize(Decimal("0.00001"))
        # USD -> account-currency numbers. On a cent account both the lot and the money are
        # 1/100 of the real thing, so its numbers are those of a USD account (in cents).
        per_usd = Decimal(1) if profile.currency == "USC" else usd_rate
        point_value = spec.contract_size.scaleb(-spec.digits) * _USD_PER[spec.quote] / per_usd
        direction = 1 if pos.side == "buy" else -1
        closing = entry != "in"
        moved = (close_points - pos.open_points) * direction if closing else 0
        profit = Decimal(moved) * point_value * lots
        commission = Decimal(0)
        rate = _COMMISSION_USD_PER_LOT.get(profile.account_type)
        if closing and rate is not None and spec.commission:
            commission = -(rate * lots / per_usd)
        nights = _nights(pos.open_ms, close_ms) if closing else 0
        swap = spec.swap_per_lot[0 if pos.side == "buy" else 1] * nights * lots / per_usd

        fill: dict[str, Any] = {
            "schema": "fill.v1",
            "server": server.name,
            "platform": platform,
            "event": "add",
            "deal": deal,
            "position": pos.position,
            "login": profile.login,
            "side": pos.side,
            "entry": entry,
            "symbol": spec.name + profile.suffix,
            "volume": pos.volume,
            "open_time": _time(pos.open_ms, platform),
            "close_time": _time(close_ms, platform),
            "open_price": _price(pos.open_points, spec.digits),
            "close_price": _price(close_points, spec.digits),
            "digits": spec.digits,
            "contract_size": f"{spec.contract_size:f}",
        }
        # MT4 bridges often lack the spread and point value; MT5 ones mostly send them.
        if rng.random() < (0.75 if platform == "mt4" else 0.95):
            fill["spread_points"] = pos.spread_points
        if rng.random() < (0.85 if platform == "mt4" else 0.97):
            fill["point_value"] = f"{point_value.quantize(Decimal('0.00001'), ROUND_HALF_EVEN):f}"
        fill["commission"] = _money(commission)
        fill["swap"] = _money(swap)
        fill["profit"] = _money(profit)
        fill["currency"] = profile.currency
        if profile.currency not in ("USD", "USC") or platform == "mt5":
            fill["usd_rate"] = f"{usd_rate:f}"
        reason = self._reason(profile, moved)
        fill["reason"] = reason
        if reason in ("sl", "tp", "so"):
            fill["comment"] = f"[{reason} {fill['close_price']}]"
        elif reason == "expert":
            fill["magic"] = 100_000 + profile.login % 9973
        return fill

    # -- market and habits -----------------------------------------------------------------

    def _mid(self, spec: SymbolSpec, ms: int) -> int:
        """The market price of ``spec`` at ``ms``, in points: a mean-reverting random walk."""
        base = float(spec.price.scaleb(spec.digits))
        if spec.name not in self.state.mids:  # start somewhere near the typical price
            self.state.mids[spec.name] = (ms, base + self.rng.gauss(0, 3 * spec.daily_points))
        then, mid = self.state.mids[spec.name]
        dt_days = max(0, ms - then) / 86_400_000
        if dt_days > 0:
            keep = math.exp(-dt_days / 30)
            mid = (
                base
                + (mid - base) * keep
                + self.rng.gauss(0, spec.daily_points * math.sqrt(dt_days))
            )
            mid = min(max(mid, base * 0.5), base * 1.5)
        self.state.mids[spec.name] = (max(ms, then), mid)
        return round(mid)

    def _move(self, spec: SymbolSpec, hold_ms: int) -> int:
        """How far the market moved over a holding period, in points (can be 0 for scalps)."""
        sigma = spec.daily_points * math.sqrt(hold_ms / 86_400_000)
        return round(self.rng.gauss(0, sigma))

    def _hold_ms(self, style: str) -> int:
        rng = self.rng
        kind = rng.choices(
            ("scalp", "intraday", "swing"),
            weights={"scalper": (70, 25, 5), "intraday": (20, 60, 20), "swing": (10, 30, 60)}[
                style
            ],
        )[0]
        if kind == "scalp":
            seconds = rng.expovariate(1 / 90)
        elif kind == "intraday":
            seconds = rng.expovariate(1 / 7200)
        else:
            seconds = 86_400 * math.exp(rng.gauss(math.log(2.5), 0.7))
        return max(1000, int(seconds * 1000))

    def _volume(self, profile: AccountProfile) -> int:
        lots = profile.median_lots * math.exp(self.rng.gauss(0, 0.8))
        cap = 500.0 if profile.account_type == "standard_cent" else 50.0
        hundredths = max(1, round(min(lots, cap) * 100))  # volume step 0.01 lot
        return hundredths if profile.server.platform == "mt4" else hundredths * 100

    def _spread(self, profile: AccountProfile, spec: SymbolSpec) -> int:
        low, high = spec.spread
        points = self.rng.randint(low, high)
        factor = _SPREAD_FACTOR.get(profile.account_type)
        if factor is not None:
            points = round(points * factor) + self.rng.randint(0, 2)
        return points

    def _reason(self, profile: AccountProfile, moved: int) -> str:
        rng = self.rng
        if profile.uses_ea and rng.random() < 0.8:
            return "expert"
        if rng.random() < 0.2:
            return "tp" if moved > 0 else "sl"
        if rng.random() < 0.005:
            return "so"
        return rng.choices(("client", "mobile", "web"), weights=(55, 35, 10))[0]

    # -- tickets -----------------------------------------------------------------------------

    def _ticket(self, server: Server, wanted: int) -> int:
        used = self.state.tickets_used.setdefault(server.name, set())
        while wanted in used:
            wanted += 1
        used.add(wanted)
        return wanted

    def _next_deal(self, server: Server, now: int, *, above: int = 0) -> int:
        last = self.state.last_deal.get(server.name, 0)
        deal = self._ticket(server, max(server.ticket_at(now), last + 1, above + 1))
        self.state.last_deal[server.name] = deal
        return deal


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _nights(open_ms: int, close_ms: int) -> int:
    """Rollovers (21:00 UTC) between open and close."""
    shift = 3 * 3_600_000  # 21:00 becomes midnight
    return max(0, (close_ms + shift) // 86_400_000 - (open_ms + shift) // 86_400_000)


def generate_fills(
    seed_dict: Mapping[str, Any], rng: random.Random, count: int, start: datetime
) -> Iterator[dict[str, Any]]:
    """``count`` fill.v1 dicts for the seed's accounts, the first closing just after ``start``.

    Volumes are lognormal per account in MT4 (1/100) or MT5 (1/10000 lot) units; holding times
    run from seconds to days (scalpers trip ``min_hold_seconds``); raw-spread and pro accounts
    pay commission on forex and metals; MT5 positions sometimes open with an ``in`` deal in the
    stream; rarely a dealer updates or deletes an earlier deal, or an account unknown to the
    seed trades. Every fill is valid fill.v1.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return _Simulator(seed_dict, rng, start).run(count)

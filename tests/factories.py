"""Factories: build what a test is about, override only the fields it cares about."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from agents.settings import Settings
from agents.topics import output_topics
from engine.fill import Fill, parse_fill
from engine.ledger import Ledger
from engine.rules import Change, RuleBook
from engine.seed import parse_seed

T0 = "2024-01-01T00:00:00Z"

TOPICS = output_topics(Settings())
"""The fill processor's output topics, from the default settings (credits.v1, ...)."""


def make_fill_dict(**overrides: Any) -> dict[str, Any]:
    """A valid fill.v1 dict: MT4, 1 lot EURUSD, standard USD account 900001, held 10 min,
    moved 50 points, no spread info, no commission."""
    fill: dict[str, Any] = {
        "schema": "fill.v1",
        "server": "mt4-live-1",
        "platform": "mt4",
        "event": "add",
        "deal": 1001,
        "position": 1001,
        "login": 900001,
        "side": "buy",
        "entry": "out",
        "symbol": "EURUSD",
        "volume": 100,
        "open_time": "2024-03-01T10:00:00Z",
        "close_time": "2024-03-01T10:10:00Z",
        "open_price": "1.08000",
        "close_price": "1.08050",
        "digits": 5,
        "contract_size": "100000",
        "commission": "0.00",
        "swap": "0.00",
        "profit": "50.00",
        "currency": "USD",
        "reason": "client",
    }
    fill.update(overrides)
    return {k: v for k, v in fill.items() if v is not None}


def make_fill(**overrides: Any) -> Fill:
    return parse_fill(make_fill_dict(**overrides))


def fill_line(**overrides: Any) -> bytes:
    return orjson.dumps(make_fill_dict(**overrides))


def lots(n: float | str, platform: str = "mt4") -> int:
    """Raw volume for `n` lots on the platform (MT4 1/100 lot, MT5 1/10000 lot)."""
    return int(Decimal(str(n)) * (100 if platform == "mt4" else 10000))


SIMPLE_SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: flat
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "15"}
ibs:
  - {id: IB-1, plan: flat, rebate_pct: "20"}
clients:
  - {id: C-1, ib: IB-1, verified: true}
accounts:
  - {login: 900001, client: C-1, type: standard}
"""


def make_ledger(seed_yaml: str = SIMPLE_SEED) -> Ledger:
    return Ledger.from_seed(parse_seed(seed_yaml, "test-seed.yaml"))


def change(at: str, subject: str, ident: str, **fields: Any) -> Change:
    return Change(datetime.fromisoformat(at), subject, ident, fields)


def book(*changes: Change, depth_limit: int = 10) -> RuleBook:
    return RuleBook(changes, depth_limit=depth_limit)


def amounts(settlement: Any) -> dict[tuple[str, str], str]:
    """{(kind, beneficiary id): amount} of a settlement's credits, as strings."""
    return {(c.kind, c.beneficiary_id): f"{c.amount:.2f}" for c in settlement.credits}

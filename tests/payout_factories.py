"""Credits for the payout, tier and statement tests: real credit.v1 dicts from the engine.

TIER_SEED gives IB-1 three direct clients (hourly payout, no tier table: tests of the engine
functions pass TIERS, SPEC 3's example table, themselves; tests through the seed add `payout`,
`hold_hours` and `tiers` to it); C-3's rebate is 100%, so its fills earn IB-1 no
ib_commission credit at all (only the client's rebate names IB-1) and must still count. IB-2
is another IB whose lots must never count for IB-1.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from engine.payouts import Tier, parse_period, settlement_id
from engine.replay import replay_lines
from schemas import validate
from tests.factories import fill_line, lots, make_ledger

__all__ = [
    "EVENTS",
    "LIVE_MARCH",
    "LIVE_SEED",
    "MARCH",
    "TIERS",
    "TIER_SEED",
    "credits_for",
    "fill_of",
    "hourly_event",
]

# SPEC 3: from 100 std lots 1 USD a lot, from 500 std lots 2 USD a lot.
TIERS = (Tier(Decimal(100), Decimal(1)), Tier(Decimal(500), Decimal(2)))

TIER_SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: flat
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}
ibs:
  - {id: IB-1, plan: flat, rebate_pct: "20"}
  - {id: IB-2, plan: flat, rebate_pct: "0"}
clients:
  - {id: C-1, ib: IB-1, verified: true}
  - {id: C-2, ib: IB-1, verified: true}
  - {id: C-3, ib: IB-1, verified: true, rebate_pct: "100"}
  - {id: C-9, ib: IB-2, verified: true}
accounts:
  - {login: 1, client: C-1, type: standard}
  - {login: 2, client: C-2, type: standard}
  - {login: 3, client: C-3, type: standard}
  - {login: 9, client: C-9, type: standard}
"""


def fill_of(deal: int, login: int, n_lots: str, close: str, **more: Any) -> bytes:
    """One closing MT4 fill of `n_lots` lots, held 10 min before `close` (min_hold is 0)."""
    return fill_line(
        deal=deal,
        position=deal,
        login=login,
        volume=lots(n_lots),
        open_time=close[:14] + "00:00Z",
        close_time=close,
        **more,
    )


def credits_for(lines: list[bytes], seed: str = TIER_SEED) -> list[dict[str, Any]]:
    """The credit.v1 dicts an offline replay of `lines` writes, in order."""
    out: list[bytes] = []
    replay_lines(
        [("test", i, line) for i, line in enumerate(lines, 1)], make_ledger(seed), out.append
    )
    return [orjson.loads(line) for line in out]


# March 2024 for IB-1: three clients' fills, plus fills that must not count. What they pay is
# worked out by hand in tests/unit/test_statement.py (money) and test_payouts.py (tier lots).
MARCH = [
    fill_of(1, 1, "50", "2024-03-04T10:10:00Z"),  # C-1
    fill_of(2, 1, "20.5", "2024-03-15T12:10:00Z"),  # C-1
    fill_of(3, 2, "30", "2024-03-20T09:10:00Z"),  # C-2
    fill_of(4, 3, "20", "2024-03-31T23:10:00Z"),  # C-3: 100% rebate, no ib_commission credit
    fill_of(5, 1, "10", "2024-04-01T00:10:00Z"),  # April: another period
    fill_of(6, 9, "400", "2024-03-10T10:10:00Z"),  # C-9 belongs to IB-2
]


def hourly_event(ib: str, hour: str, amount: str, count: int, sequence: int = 0) -> dict[str, Any]:
    """A settlement.v1 event as the hourly settlement publishes it."""
    period = parse_period(hour[:13])  # "2024-03-04T10:00:00Z" -> the hour 2024-03-04T10
    event: dict[str, Any] = {
        "schema": "settlement.v1",
        "event": "ib_settlement" if sequence == 0 else "ib_settlement_adjustment",
        "settlement_id": settlement_id(ib, period, sequence),
        "ib": ib,
        "hour": hour,
        "amount": amount,
        "count": count,
        "currency": "USD",
    }
    if sequence:
        event |= {"adjusts": settlement_id(ib, period, 0), "sequence": sequence}
    validate("settlement.v1", event)
    return event


# IB-1's three commission hours in March; IB-2's deal 6: 400 lots x 10 USD = 4000.00, rebate 0%.
EVENTS = [
    hourly_event("IB-1", "2024-03-04T10:00:00Z", "400.00", 1),
    hourly_event("IB-1", "2024-03-15T12:00:00Z", "164.00", 1),
    hourly_event("IB-1", "2024-03-20T09:00:00Z", "240.00", 1),
    hourly_event("IB-2", "2024-03-10T10:00:00Z", "4000.00", 1),
    hourly_event("IB-1", "2024-04-01T00:00:00Z", "80.00", 1),  # April: 10 lots x 10 x 80%
]


# IB-D: 10 USD/lot, 20% to its client: 8.00 ib_commission per lot, paid daily 24 h after the day.
# IB-T: 10 USD/lot, nothing to C-T, all of it to C-R (100%: no ib_commission, only C-R's rebate
# names IB-T); paid monthly without hold, with SPEC 3's tier table. Login 4 is a cent account:
# its lots count x 0.01.
LIVE_SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: flat
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}
  - id: tiered
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "10"}
    tiers:
      - {from_std_lots: "100", per_lot_bonus_usd: "1"}
      - {from_std_lots: "500", per_lot_bonus_usd: "2"}
ibs:
  - {id: IB-D, plan: flat, rebate_pct: "20", payout: daily, hold_hours: 24}
  - {id: IB-T, plan: tiered, rebate_pct: "0", payout: monthly}
clients:
  - {id: C-D, ib: IB-D, verified: true}
  - {id: C-T, ib: IB-T, verified: true}
  - {id: C-R, ib: IB-T, verified: true, rebate_pct: "100"}
accounts:
  - {login: 1, client: C-D, type: standard}
  - {login: 2, client: C-T, type: standard}
  - {login: 3, client: C-R, type: standard}
  - {login: 4, client: C-T, type: standard_cent}
"""

# March 2024 for IB-T, in std lots: C-T 60 + C-R 30 (no ib_commission, still counts) + the cent
# account's 2000 lots x 0.01 = 20 + C-T 15 at 23:50 on the 31st = 125; deal 16 (40 lots) is
# deleted and counts 0; deal 15 closes in April. 125 reaches the tier from 100 std lots:
# 125 x 1.00 = 125.00.
LIVE_MARCH = [
    fill_of(11, 2, "60", "2024-03-04T10:10:00Z"),
    fill_of(12, 3, "30", "2024-03-15T12:10:00Z"),
    fill_of(13, 4, "2000", "2024-03-20T09:10:00Z"),
    fill_of(14, 2, "15", "2024-03-31T23:50:00Z"),
    fill_of(15, 2, "100", "2024-04-01T00:10:00Z"),
    fill_of(16, 2, "40", "2024-03-10T10:10:00Z"),
    fill_of(16, 2, "40", "2024-03-10T10:10:00Z", event="delete"),
]

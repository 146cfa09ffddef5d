"""Credits for the payout, tier and statement tests: real credit.v1 dicts from the engine.

TIER_SEED gives IB-1 three direct clients (the seed does not carry payout periods or tier tables
yet: the tests pass TIERS, SPEC 3's example table, to the engine functions themselves); C-3's rebate is 100%, so its fills earn IB-1 no
ib_commission credit at all (only the client's rebate names IB-1) and must still count. IB-2
is another IB whose lots must never count for IB-1.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from engine.payouts import Tier
from engine.replay import replay_lines
from tests.factories import fill_line, lots, make_ledger

__all__ = ["TIERS", "TIER_SEED", "credits_for", "fill_of"]

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

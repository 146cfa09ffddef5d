"""A small hand-checked scenario for `explain` and `replay --outcomes` (numbers in comments).

IB-DESK (plan desk: gold 10 USD per standard lot, rule id R-GOLD, min hold 180 s, rebate 25%)
sits under IB-TOP (plan top: 10% override at level 2). C-TOP is IB-TOP's own client trading
under IB-DESK. Login 1001 has 3.00 JM USD allocated; cent login 1003 has a 2 USD deposit bonus
(2 / 2 = 1 standard lot of turnover needed).
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.factories import make_fill_dict

SEED = """
effective_from: "2024-01-01T00:00:00Z"
loyalty: {accrual_pct: "10", coverage_pct: "50", exclude_ib_referred: false}
plans:
  - id: top
    rules:
      - {account_types: ["*"], symbols: ["*"], per_lot_usd: "1"}
    upline_override_pct: ["10"]
  - id: desk
    rules:
      - {id: R-GOLD, account_types: ["*"], symbols: [XAUUSD], per_lot_usd: "10"}
    min_hold_seconds: 180
ibs:
  - {id: IB-TOP, plan: top, rebate_pct: "0", client: C-TOP}
  - {id: IB-DESK, plan: desk, parent: IB-TOP, rebate_pct: "25"}
clients:
  - {id: C-A, ib: IB-DESK, verified: true}
  - {id: C-TOP, ib: IB-DESK, verified: true}
  - {id: C-CENT, ib: IB-DESK, verified: true}
accounts:
  - {login: 1001, client: C-A, type: standard}
  - {login: 1002, client: C-TOP, type: standard}
  - {login: 1003, client: C-CENT, type: cent}
wallets:
  - {login: 1001, jm_allocated: "3.00", allocated_at: "2024-02-01T00:00:00Z"}
bonuses:
  - {login: 1003, bonus_id: B-CENT, amount_usd: "2", granted_at: "2024-02-01T00:00:00Z"}
"""

SERVER = "mt4-live-1"


def _gold(deal: int, login: int, **over: Any) -> dict[str, Any]:
    return make_fill_dict(
        deal=deal,
        position=deal,
        login=login,
        symbol="XAUUSD",
        digits=2,
        open_price="2000.00",
        close_price="2005.00",
        contract_size="100",
        **over,
    )


# Deal 1, login 1001: 2 lots of gold held 10 min, commission -8.00 USD.
#   gross 2 x 10 = 20.00; rebate 25% = 5.00; IB-DESK net 15.00; IB-TOP L2 10% x 20.00 = 2.00;
#   cost 8.00; coverage min(8.00 x 50% = 4.00, balance 3.00) = 3.00 (3.00 -> 0.00);
#   accrual (8.00 - 3.00) x 10% = 0.50 JM USD to C-A.
EARNING = _gold(1, 1001, volume=200, commission="-8.00")
# Deal 2, login 1001: held 120 s (10:00:00 -> 10:02:00) < 180 s: min_hold, no commission.
#   cost 4.00; balance 0 -> no coverage; accrual 4.00 x 10% = 0.40 JM USD.
MIN_HOLD = _gold(
    2,
    1001,
    volume=100,
    commission="-4.00",
    open_time="2024-03-01T10:00:00Z",
    close_time="2024-03-01T10:02:00Z",
)
# Deal 3, login 1002 (C-TOP, IB-TOP's own client): 1 lot of gold, no commission.
#   gross 10.00; rebate 25% = 2.50; net 7.50; IB-TOP's override withheld (self_trade_upline).
SELF_TRADE_UPLINE = _gold(3, 1002, volume=100)
# Deal 4, cent login 1003: 1 cent lot = 1 x 0.01 = 0.01 standard lots.
#   gross 0.01 x 10 = 0.10; rebate 25% = 0.025 -> 0.02 (half even); net 0.08;
#   IB-TOP L2 10% x 0.10 = 0.01; bonus B-CENT turnover 0.01 of 1 standard lot.
CENT = _gold(4, 1003, volume=100)
# Deal 1 updated to 3 lots: reversals of 15.00, 5.00, 2.00, 3.00 (coverage returned) and
#   0.50 JM USD; then gross 3 x 10 = 30.00, rebate 7.50, net 22.50, override 3.00;
#   coverage min(4.00, 3.00 returned) = 3.00; accrual (8.00 - 3.00) x 10% = 0.50.
UPDATE = {**EARNING, "event": "update", "volume": 300}

FILLS = [EARNING, MIN_HOLD, SELF_TRADE_UPLINE, CENT, UPDATE]
BAD_LINES = [
    b"{not json",
    orjson.dumps({**EARNING, "deal": 9, "position": 9, "point_value": "-1.5", "spread_points": 3}),
]


def fill_lines() -> list[bytes]:
    return [orjson.dumps(f) for f in FILLS]

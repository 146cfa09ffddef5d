"""Back-office (crm-event.v1) fixtures: a small IB tree, a day of events, the same as a seed.

`SCENARIO_EVENTS` and `SCENARIO_SEED_CHANGES` describe the same back-office history twice: as
crm-event.v1 lines and, written by hand, as seed `changes:`. Replaying `SCENARIO_FILLS`
against either must give the same credits.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import orjson

from tests.factories import fill_line, lots

# IB-M (code 10001) <- IB-1 (code 32071, 20% default rebate); IB-2 has no partner code, so its
# id is its code; IB-X is terminated. Plan std pays 15 USD/lot and its upline 10% of the L1
# gross; plan gold pays 20 USD/lot and no upline override. No spread or commission in the
# fills below: cost 0, so no loyalty and no coverage, only IB credits and rebates.
BASE_SEED = """
effective_from: "2024-01-01T00:00:00Z"
plans:
  - id: std
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "15"}]
    upline_override_pct: ["10"]
  - id: gold
    rules: [{account_types: ["*"], symbols: ["*"], per_lot_usd: "20"}]
ibs:
  - {id: IB-M, plan: std, partner_code: "10001"}
  - {id: IB-1, plan: std, parent: IB-M, rebate_pct: "20", partner_code: "32071"}
  - {id: IB-2, plan: gold}
  - {id: IB-X, plan: std, status: terminated, partner_code: "40400"}
clients:
  - {id: C-1, ib: IB-1, verified: true}
accounts:
  - {login: 900001, client: C-1, type: standard}
"""

_ids = itertools.count(1)


def crm_event(type_: str, at: str = "2024-03-02T10:15:00Z", **fields: Any) -> dict[str, Any]:
    """A crm-event.v1 dict; `event_id` is fresh unless given, a None field is left out."""
    event: dict[str, Any] = {
        "schema": "crm-event.v1",
        "event_id": f"bo-{next(_ids)}",
        "type": type_,
        "at": at,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


def crm_line(type_: str, at: str = "2024-03-02T10:15:00Z", **fields: Any) -> bytes:
    return orjson.dumps(crm_event(type_, at, **fields))


SCENARIO_EVENTS: list[dict[str, Any]] = [
    crm_event("ib_registered", "2024-03-02T10:00:00Z", ib="IB-9", partner_code="55555",
              parent_code="32071", plan="gold", rebate_pct="10"),
    crm_event("client_registered", "2024-03-02T10:15:00Z", client="C-88", ref_code="32071",
              verified=True),
    crm_event("account_opened", "2024-03-02T10:16:00Z", login=900088, client="C-88",
              account_type="standard", currency="USD", live=True),
    crm_event("client_registered", "2024-03-02T10:20:00Z", client="C-99", ref_code="55555",
              verified=False),
    crm_event("account_opened", "2024-03-02T10:21:00Z", login=900099, client="C-99",
              account_type="standard", currency="USD", live=True),
    crm_event("client_registered", "2024-03-02T10:30:00Z", client="C-77", ref_code="77777",
              verified=True),
    crm_event("account_opened", "2024-03-02T10:31:00Z", login=900077, client="C-77",
              account_type="standard", currency="USD", live=True),
    crm_event("rebate_set", "2024-03-05T00:00:00Z", client="C-1", pct="50"),
    crm_event("client_verified", "2024-03-06T00:00:00Z", client="C-99"),
    crm_event("client_moved", "2024-03-07T00:00:00Z", client="C-88", ib="IB-2"),
    crm_event("account_changed", "2024-03-08T00:00:00Z", login=900099, live=False),
    crm_event("ib_changed", "2024-03-09T00:00:00Z", ib="IB-1", plan="gold", parent_code=None),
]  # fmt: skip
# crm_event drops None fields; an explicit null parent_code (IB-1 becomes a top IB) is kept:
SCENARIO_EVENTS[-1]["parent_code"] = None

# The same history written by hand as a seed would write it.
SCENARIO_SEED_CHANGES = """
changes:
  - {at: "2024-03-02T10:00:00Z", ib: IB-9, partner_code: "55555", parent: IB-1, plan: gold,
     rebate_pct: "10"}
  - {at: "2024-03-02T10:15:00Z", client: C-88, ib: IB-1, verified: true}
  - {at: "2024-03-02T10:16:00Z", account: 900088, client: C-88, type: standard, live: true}
  - {at: "2024-03-02T10:20:00Z", client: C-99, ib: IB-9, verified: false}
  - {at: "2024-03-02T10:21:00Z", account: 900099, client: C-99, type: standard, live: true}
  - {at: "2024-03-02T10:30:00Z", client: C-77, verified: true}
  - {at: "2024-03-02T10:31:00Z", account: 900077, client: C-77, type: standard, live: true}
  - {at: "2024-03-05T00:00:00Z", client: C-1, rebate_pct: "50"}
  - {at: "2024-03-06T00:00:00Z", client: C-99, verified: true}
  - {at: "2024-03-07T00:00:00Z", client: C-88, ib: IB-2}
  - {at: "2024-03-08T00:00:00Z", account: 900099, live: false}
  - {at: "2024-03-09T00:00:00Z", ib: IB-1, plan: gold, parent: null}
"""


def _fill(deal: int, login: int, volume_lots: int, close: str) -> bytes:
    opened = (datetime.fromisoformat(close) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return fill_line(
        deal=deal, position=deal, login=login, volume=lots(volume_lots),
        open_time=opened, close_time=close,
    )  # fmt: skip


SCENARIO_FILLS: list[bytes] = [
    _fill(1, 900088, 2, "2024-03-03T12:00:00Z"),  # C-88 under IB-1 (std, 20%)
    _fill(2, 900099, 1, "2024-03-04T12:00:00Z"),  # C-99 under IB-9 (gold, 10%), IB-1 above
    _fill(3, 900077, 2, "2024-03-04T12:30:00Z"),  # C-77: direct (unknown ref code 77777)
    _fill(4, 900001, 2, "2024-03-05T12:00:00Z"),  # C-1 with its 50% override
    _fill(5, 900088, 2, "2024-03-07T12:00:00Z"),  # C-88 moved to IB-2 (gold, 0%)
    _fill(6, 900099, 1, "2024-03-08T12:00:00Z"),  # 900099 is a demo account now
    _fill(7, 900001, 2, "2024-03-10T12:00:00Z"),  # IB-1 on gold, a top IB now
]

# Per (kind, beneficiary): what the scenario pays, by hand (L1 = lots x per_lot_usd;
# rebate = L1 x pct; IB = L1 - rebate; override = L1 x the upline plan's 10%).
#   deal 1: 2 x 15 = 30.00; 20% -> C-88 6.00, IB-1 24.00; IB-M 10% x 30 = 3.00
#   deal 2: 1 x 20 = 20.00; 10% -> C-99 2.00, IB-9 18.00; IB-1 (std) 10% x 20 = 2.00;
#           IB-M is L3 and std has no L3 override
#   deal 3: direct client: nothing
#   deal 4: 2 x 15 = 30.00; 50% -> C-1 15.00, IB-1 15.00; IB-M 3.00
#   deal 5: 2 x 20 = 40.00; IB-2 default 0% -> IB-2 40.00; IB-2 has no parent
#   deal 6: demo: nothing
#   deal 7: 2 x 20 = 40.00; 50% -> C-1 20.00, IB-1 20.00; no parent any more
SCENARIO_TOTALS = {
    ("ib_commission", "IB-1"): "59.00",  # 24 + 15 + 20
    ("client_rebate", "C-88"): "6.00",
    ("ib_override", "IB-M"): "6.00",  # 3 + 3
    ("ib_commission", "IB-9"): "18.00",
    ("client_rebate", "C-99"): "2.00",
    ("ib_override", "IB-1"): "2.00",
    ("client_rebate", "C-1"): "35.00",  # 15 + 20
    ("ib_commission", "IB-2"): "40.00",
}

"""Every Redis key the engine uses, in one place (the store is the only module that uses them)."""

from __future__ import annotations

__all__ = [
    "ACCOUNT",
    "CRM_SEEN",
    "DEAL",
    "LOGIN_DEALS",
    "LOGIN_SETTLED",
    "PARKED",
    "PARKED_ALL",
    "PARKED_LOGINS",
    "PARKED_SEQ",
    "PREFIX",
    "REQUEST",
    "RESETTLE_DONE",
    "RESETTLE_JOBS",
    "REWARD",
    "RULES_LOG",
    "RULES_VERSION",
    "SEEDS",
    "SETTLE_DIRTY",
    "SETTLE_EMITTED",
    "SETTLE_OUTBOX",
    "SETTLE_SLOT",
    "TIER_LOTS",
]

PREFIX = "rebate:"
RULES_LOG = "rebate:rules:log"
"""LIST of rule changes (JSON), append-only: the seed's items and every admin command."""
RULES_VERSION = "rebate:rules:version"
"""Bumped with every append to RULES_LOG; workers refold their cached rules when it moves."""
ACCOUNT = "rebate:account:{login}"
"""HASH v (version, for compare-and-set) and s (wallet state JSON: JM allocations, bonuses)."""
DEAL = "rebate:deal:{server}:{deal}"
"""HASH rev:<revision> -> what that revision emitted; srev/standing -> what stands now;
j:<n> -> the n-th revision applied (its fill, outcome, reasons), n -> the last n used."""
LOGIN_DEALS = "rebate:login:{login}:deals"
"""ZSET "<server>:<deal>" -> close_time epoch seconds: the deals a login traded (explain --live)."""
REWARD = "rebate:reward:{client}"
"""STRING: the client's JM USD reward wallet, in cents (INCRBY keeps it exact)."""
REQUEST = "rebate:request:{request_id}"
"""STRING: the answer to a wallet command, so the same request_id never acts twice."""
SETTLE_SLOT = "rebate:settle:{slot}"
"""HASH <ib>|c (cents) and <ib>|n (count) of commission credits by payout slot (an IB period
with its hold, engine/settlement.py `slot_label`; an hourly slot without hold is the hour)."""
SETTLE_EMITTED = "rebate:settled:{slot}"
"""HASH <ib>|c, <ib>|n, <ib>|seq: what settlement events have already reported; <ib>|tb,
<ib>|tbseq: the tier bonus (cents) and the sequence of the last tier_bonus credit emitted."""
TIER_LOTS = "rebate:tierlots:{slot}"
"""HASH <ib> -> std_lots of its direct clients' earning fills in the slot, in 10^-10 lots."""
SETTLE_DIRTY = "rebate:settle:dirty"
"""ZSET slot -> epoch seconds when it is payable (period end + hold): slots with credits or
lots not yet reported."""
SETTLE_OUTBOX = "rebate:settle:outbox"
"""ZSET settlement record JSON -> lease expiry (epoch seconds): settled by settle.lua, removed
once its event is acknowledged by the broker; re-published if a worker died holding it."""
SEEDS = "rebate:seeds"
"""SET of fingerprints of the seeds loaded: loading the same seed again changes nothing."""
CRM_SEEN = "rebate:crm:seen"
"""ZSET of the back-office event ids applied -> when (epoch seconds): a redelivered event
changes nothing. Trimmed at the correction window: an event whose `at` is older than the window
is refused `too_late` before its id is looked at, so forgetting the id of an event that arrived
longer ago than that is safe (its `at` is older still, events are not effective later than
they arrive)."""
LOGIN_SETTLED = "rebate:login:{login}:settled"
"""ZSET "<server>:<deal>" -> close_time epoch seconds: the deals a login settled (earning or
not), trimmed below now - correction_window_hours on every write. What a late change re-settles
(engine/late.py); LOGIN_DEALS, unbounded, is for `explain --login`."""
RESETTLE_JOBS = "rebate:resettle:jobs"
"""LIST of re-settlement jobs (JSON {id, at, logins}), written with the change they are for
(crm.lua, admin) and removed once their output is published (agents/late.py)."""
RESETTLE_DONE = "rebate:resettle:done:{job}"
"""HASH login -> the outputs (JSON list) its re-settlement for the job emitted, written with it
(resettle.lua): a rerun after a crash publishes them again. Deleted with the job."""
PARKED = "rebate:parked:{login}"
"""ZSET of the fills parked for a login not attributed yet, scored by close_time (epoch
seconds); member: a 12-digit park sequence number, `|`, then the fill's JSON as received."""
PARKED_ALL = "rebate:parked"
"""ZSET `<login>|<PARKED member>` -> when it was parked (epoch seconds): the park_hours timer."""
PARKED_LOGINS = "rebate:parked:logins"
"""SET of the logins with parked fills: what to look at when the rules move."""
PARKED_SEQ = "rebate:parked:seq"
"""Counter numbering parked fills: fills with the same close_time are settled in arrival order."""

"""Every Redis key the engine uses, in one place (the store is the only module that uses them)."""

from __future__ import annotations

__all__ = [
    "ACCOUNT",
    "CRM_SEEN",
    "DEAL",
    "PARKED",
    "PARKED_ALL",
    "PARKED_LOGINS",
    "PARKED_SEQ",
    "PREFIX",
    "REQUEST",
    "REWARD",
    "RULES_LOG",
    "RULES_VERSION",
    "SEEDS",
    "SETTLE_DIRTY",
    "SETTLE_EMITTED",
    "SETTLE_HOUR",
    "SETTLE_OUTBOX",
]

PREFIX = "rebate:"
RULES_LOG = "rebate:rules:log"
"""LIST of rule changes (JSON), append-only: the seed's items and every admin command."""
RULES_VERSION = "rebate:rules:version"
"""Bumped with every append to RULES_LOG; workers refold their cached rules when it moves."""
ACCOUNT = "rebate:account:{login}"
"""HASH v (version, for compare-and-set) and s (wallet state JSON: JM allocations, bonuses)."""
DEAL = "rebate:deal:{server}:{deal}"
"""HASH rev:<revision> -> what that revision emitted; srev/standing -> what stands now."""
REWARD = "rebate:reward:{client}"
"""STRING: the client's JM USD reward wallet, in cents (INCRBY keeps it exact)."""
REQUEST = "rebate:request:{request_id}"
"""STRING: the answer to a wallet command, so the same request_id never acts twice."""
SETTLE_HOUR = "rebate:settle:{hour}"
"""HASH <ib>|c (cents) and <ib>|n (count) of commission credits by close_time hour."""
SETTLE_EMITTED = "rebate:settled:{hour}"
"""HASH <ib>|c, <ib>|n, <ib>|seq: what settlement events have already reported."""
SETTLE_DIRTY = "rebate:settle:dirty"
"""ZSET hour -> epoch seconds: hours with credits not yet reported."""
SETTLE_OUTBOX = "rebate:settle:outbox"
"""ZSET settlement record JSON -> lease expiry (epoch seconds): settled by settle.lua, removed
once its event is acknowledged by the broker; re-published if a worker died holding it."""
SEEDS = "rebate:seeds"
"""SET of fingerprints of the seeds loaded: loading the same seed again changes nothing."""
CRM_SEEN = "rebate:crm:seen"
"""SET of the back-office event ids applied: a redelivered event changes nothing."""
PARKED = "rebate:parked:{login}"
"""ZSET of the fills parked for a login not attributed yet, scored by close_time (epoch
seconds); member: a 12-digit park sequence number, `|`, then the fill's JSON as received."""
PARKED_ALL = "rebate:parked"
"""ZSET `<login>|<PARKED member>` -> when it was parked (epoch seconds): the park_hours timer."""
PARKED_LOGINS = "rebate:parked:logins"
"""SET of the logins with parked fills: what to look at when the rules move."""
PARKED_SEQ = "rebate:parked:seq"
"""Counter numbering parked fills: fills with the same close_time are settled in arrival order."""

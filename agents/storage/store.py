"""The Redis store: rules log, wallet state, deal journals, reward wallets, settlement sums.

All key formats come from agents/storage/keys.py. Applying settled fills is one Lua script
(agents/storage/apply.lua) per batch: a revision's state change and the record of what it
emitted are written together, and a revision seen before returns what it emitted then (SPEC 7).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agents.settings import Settings
from agents.storage import keys
from agents.storage.codec import (
    JournalEntry,
    decode_account,
    decode_change,
    decode_journal_entry,
    decode_output,
    decode_standing,
    encode_account,
    encode_change,
    iso_z,
)
from engine.fill import Fill
from engine.money import cents
from engine.rules import Change, RuleBook
from engine.seed import Seed
from engine.settlement import LotsIncrement, SettlementIncrement, lots_units
from engine.state import AccountState, DealJournal, Output, Standing

__all__ = [
    "UNAVAILABLE",
    "ApplyItem",
    "EventStatus",
    "Park",
    "ParkedFill",
    "RedisStore",
    "ResettleDeal",
    "ResettleJob",
    "StaleRules",
    "StoredDeal",
    "WalletStatus",
    "connect",
    "load_seed_into",
]


def _script(name: str) -> str:
    return resources.files("agents.storage").joinpath(name).read_text(encoding="utf-8")


_APPLY = _script("apply.lua")
_WALLET = _script("wallet.lua")
_SETTLE = _script("settle.lua")
_CRM = _script("crm.lua")
_UNPARK = _script("unpark.lua")
_RESETTLE = _script("resettle.lua")

WalletStatus = Literal["ok", "dup", "conflict", "stale_rules"]
EventStatus = Literal["ok", "dup", "stale_rules"]


UNAVAILABLE: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)
"""What a Redis that is down, unreachable or slow raises: callers pause and try again."""


def connect(settings: Settings) -> Redis:
    """The one way the engine opens Redis: the settings' URL, TLS and timeouts."""
    return Redis.from_url(settings.redis_url or "", **settings.redis_client_kwargs())


async def load_seed_into(settings: Settings, seed: Seed, *, replace: bool) -> int | None:
    """`RedisStore.load_seed` on a connection of its own (the `seed` command, the tools)."""
    redis = connect(settings)
    try:
        return await RedisStore(redis).load_seed(seed, replace=replace)
    finally:
        await redis.aclose()


class StaleRules(Exception):
    """The rules changed while a batch was computed: refold and compute it again."""


@dataclass(frozen=True, slots=True)
class Park:
    """A fill to park instead of settling (its login is not attributed yet: SPEC 4.2 r2)."""

    fill_json: str  # as received: settled or dead-lettered as it is later
    close_s: float
    parked_s: float


@dataclass(frozen=True, slots=True)
class ParkedFill:
    """A fill waiting in the park: its login, its members in the two ZSETs, its JSON."""

    login: int
    member: str  # in the login's ZSET: 12-digit park number, "|", the fill as received
    parked_s: float | None = None

    @property
    def value(self) -> bytes:
        return self.member.split("|", 1)[1].encode()


@dataclass(frozen=True, slots=True)
class ApplyItem:
    """One fill revision's state change, as the Lua script takes it."""

    login: int
    expected_version: int
    account: AccountState
    server: str
    deal: int
    revision: str
    expected_standing: str
    standing: Standing | None
    seq: int | None
    standing_json: str
    output_json: str
    rewards: tuple[tuple[str, Decimal], ...]  # (client, amount)
    settlements: tuple[SettlementIncrement, ...]
    journal_entry: str  # codec.encode_journal_entry: the fill, outcome and reasons
    close_epoch: int  # the fill's close_time, epoch seconds: its place in the login's index
    lots: tuple[LotsIncrement, ...] = ()
    park: Park | None = None
    # now - correction_window_hours (epoch seconds): the deal joins the login's bounded index
    # of settled deals, trimmed below this (late re-settlement, agents/late.py); None: it does not
    settled_floor: int | None = None

    def to_arg(self) -> bytes:
        parking: dict[str, Any] = {}
        if self.park is not None:
            parking["p"] = {
                "k": keys.PARKED.format(login=self.login),
                "a": keys.PARKED_ALL,
                "q": keys.PARKED_SEQ,
                "l": str(self.login),
                "s": keys.PARKED_LOGINS,
                "m": self.park.fill_json,
                "c": repr(self.park.close_s),
                "t": repr(self.park.parked_s),
            }
        return orjson.dumps(
            {
                **parking,
                "a": keys.ACCOUNT.format(login=self.login),
                "av": self.expected_version,
                "as": encode_account(self.account),
                "d": keys.DEAL.format(server=self.server, deal=self.deal),
                "r": self.revision,
                "sr": self.expected_standing,
                "ns": self.standing_json,
                "nsr": self.standing.revision if self.standing else "",
                "q": "" if self.seq is None else str(self.seq),
                "o": self.output_json,
                "w": [[keys.REWARD.format(client=c), cents(a)] for c, a in self.rewards],
                "s": [
                    (keys.SETTLE_SLOT.format(slot=s.slot), s.ib, cents(s.amount), *s[2:])
                    for s in self.settlements
                ],
                "j": self.journal_entry,
                "x": [
                    keys.LOGIN_DEALS.format(login=self.login),
                    f"{self.server}:{self.deal}",
                    self.close_epoch,
                    *(
                        ()
                        if self.settled_floor is None
                        else (keys.LOGIN_SETTLED.format(login=self.login), self.settled_floor)
                    ),
                ],
                # A string: HINCRBY takes it as a 64-bit integer, where Lua numbers are doubles.
                "l": [
                    (keys.TIER_LOTS.format(slot=t.slot), t.ib, str(lots_units(t.std_lots)), *t[2:])
                    for t in self.lots
                ],
            }
        )


@dataclass(frozen=True, slots=True)
class ResettleJob:
    """A late change's re-settlement to do: its id (event id, or an admin change's hash), its
    `at`, the logins it touches (engine/late.py `touched_logins`)."""

    id: str
    at: datetime
    logins: tuple[int, ...]
    raw: bytes = b""  # as stored: what removes it

    def to_json(self) -> bytes:
        return orjson.dumps({"id": self.id, "at": iso_z(self.at), "logins": list(self.logins)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> ResettleJob:
        data = orjson.loads(raw)
        at = datetime.fromisoformat(data["at"])
        return cls(data["id"], at, tuple(data["logins"]), _bytes(raw))


@dataclass(frozen=True, slots=True)
class StoredDeal:
    """A settled deal of a login: its last journal entry (revision, fill) and what stands."""

    server: str
    deal: int
    revision: str
    fill: Fill
    fill_json: bytes  # as received, for the re-settlement's journal entry
    standing: Standing | None

    @classmethod
    def of(cls, server: str, deal: int, entry: bytes | str, standing: Any) -> StoredDeal:
        data = orjson.loads(entry)
        fill_json = orjson.dumps(data["fill"])
        decoded = decode_journal_entry(entry)
        standing_now = decode_standing(standing)
        return cls(server, deal, decoded.revision, decoded.fill, fill_json, standing_now)


@dataclass(frozen=True, slots=True)
class ResettleDeal:
    """One deal's part of a login's re-settlement, as resettle.lua takes it."""

    server: str
    deal: int
    expected_standing: str
    revision: str
    output_json: str
    standing_json: str
    journal_entry: str
    rewards: tuple[tuple[str, Decimal], ...]
    settlements: tuple[SettlementIncrement, ...]
    lots: tuple[LotsIncrement, ...]

    def to_arg(self) -> bytes:
        return orjson.dumps(
            {
                "d": keys.DEAL.format(server=self.server, deal=self.deal),
                "sr": self.expected_standing,
                "r": self.revision,
                "o": self.output_json,
                "ns": self.standing_json,
                "j": self.journal_entry,
                "w": [[keys.REWARD.format(client=c), cents(a)] for c, a in self.rewards],
                "s": [
                    (keys.SETTLE_SLOT.format(slot=s.slot), s.ib, cents(s.amount), *s[2:])
                    for s in self.settlements
                ],
                "l": [
                    (keys.TIER_LOTS.format(slot=t.slot), t.ib, str(lots_units(t.std_lots)), *t[2:])
                    for t in self.lots
                ],
            }
        )


class RedisStore:
    def __init__(self, redis: Redis, *, depth_limit: int = 10) -> None:
        self.redis = redis
        self.book = RuleBook(depth_limit=depth_limit)
        self.rules_version = -1  # nothing loaded yet
        self._rules_loaded = 0  # entries of the rules log folded into self.book
        self._apply = redis.register_script(_APPLY)
        self._wallet = redis.register_script(_WALLET)
        self._settle = redis.register_script(_SETTLE)
        self._crm = redis.register_script(_CRM)
        self._unpark = redis.register_script(_UNPARK)
        self._resettle = redis.register_script(_RESETTLE)
        # The fills and wallet-command agents share this store: one refresh at a time, or
        # both could fold the same new log entries and skip the ones after them.
        self._rules_lock = asyncio.Lock()

    # -- rules -------------------------------------------------------------------------------

    async def refresh_rules(self) -> bool:
        """Fold any new rule changes into the cached book; True when something changed."""
        async with self._rules_lock:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(keys.RULES_VERSION)
                pipe.lrange(keys.RULES_LOG, self._rules_loaded, -1)
                version_raw, entries = await pipe.execute()
            version = int(version_raw or 0)
            if version == self.rules_version:
                return False
            self.book.extend(decode_change(e) for e in entries)
            self._rules_loaded += len(entries)
            self.rules_version = version
            return True

    async def append_changes(self, changes: Iterable[Change]) -> int:
        """Append rule changes (seed or admin) and bump the version; returns the new version."""
        encoded = [encode_change(c) for c in changes]
        if not encoded:
            return int(await self.redis.get(keys.RULES_VERSION) or 0)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(keys.RULES_LOG, *encoded)
            pipe.incr(keys.RULES_VERSION)
            _, version = await pipe.execute()
        return int(version)

    async def append_event_change(
        self, event_id: str, change: Change, job: ResettleJob, *, now_s: float, window_s: float
    ) -> EventStatus:
        """Append a back-office event's change, checked against the cached rules, once per id.

        "dup": the event was applied before; "stale_rules": the rules moved since they were
        folded (refresh and check again); "ok": appended, with the id and the change's
        re-settlement `job` recorded in the same script (agents/storage/crm.lua), so a crash
        never applies an event twice nor loses its re-settlement. Ids are kept `window_s`
        seconds after the later of `now_s` and the change's `at`.
        """
        status, _ = await self._crm(
            keys=[keys.RULES_VERSION, keys.RULES_LOG, keys.CRM_SEEN, keys.RESETTLE_JOBS],
            args=[
                str(self.rules_version),
                event_id,
                encode_change(change),
                repr(max(now_s, change.at.timestamp())),
                repr(now_s - window_s),
                job.to_json() if job.logins else b"",
            ],
        )
        return _text(status)  # type: ignore[return-value]

    async def event_seen(self, event_id: str) -> bool:
        """Whether a back-office event was applied already (checked again when appending)."""
        if await self.redis.type(keys.CRM_SEEN) in (b"set", "set"):
            return bool(await self.redis.sismember(keys.CRM_SEEN, event_id))  # until crm.lua
        return await self.redis.zscore(keys.CRM_SEEN, event_id) is not None

    async def append_change_with_job(self, change: Change, job: ResettleJob) -> int:
        """Append an admin change and its re-settlement job in one transaction; the new version."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(keys.RULES_LOG, encode_change(change))
            pipe.incr(keys.RULES_VERSION)
            if job.logins:  # a change that touches no login has nothing to re-settle
                pipe.rpush(keys.RESETTLE_JOBS, job.to_json())
            replies = await pipe.execute()
        return int(replies[1])

    async def rule_changes(self) -> list[Change]:
        return [decode_change(e) for e in await self.redis.lrange(keys.RULES_LOG, 0, -1)]

    # -- seed --------------------------------------------------------------------------------

    async def load_seed(self, seed: Seed, *, replace: bool = False) -> int | None:
        """Load a seed: rules into the log, starting wallets into state.

        Idempotent: the same seed twice changes nothing the second time (None is returned), and
        starting wallet state never overwrites live state (a running deployment's JM balances
        and bonus progress are kept); `replace=True` wipes the engine's keys first.
        Returns the new rules version.
        """
        if replace:
            await self.clear()
        fingerprint = hashlib.sha256(
            b"\n".join(encode_change(c) for c in seed.changes)
            + repr((sorted(seed.reward_wallets.items()), seed.allocations, seed.bonuses)).encode()
        ).hexdigest()
        if not await self.redis.sadd(keys.SEEDS, fingerprint):
            return None
        accounts: dict[int, AccountState] = {}
        for login, allocation in seed.allocations:
            a = accounts.get(login) or AccountState(login)
            accounts[login] = AccountState(login, (*a.allocations, allocation), a.bonuses)
        for login, bonus in seed.bonuses:
            a = accounts.get(login) or AccountState(login)
            accounts[login] = AccountState(login, a.allocations, (*a.bonuses, bonus))
        async with self.redis.pipeline(transaction=True) as pipe:
            for client, amount in seed.reward_wallets.items():
                pipe.set(keys.REWARD.format(client=client), cents(amount), nx=True)
            for login, state in accounts.items():
                key = keys.ACCOUNT.format(login=login)
                pipe.hsetnx(key, "v", 1)
                pipe.hsetnx(key, "s", encode_account(state))
            await pipe.execute()
        return await self.append_changes(seed.changes)

    async def clear(self) -> None:
        """Delete every key of ours (tests, `seed --replace`)."""
        async for key in self.redis.scan_iter(match=f"{keys.PREFIX}*", count=1000):
            await self.redis.delete(key)
        self.book = RuleBook(depth_limit=self.book.depth_limit)
        self.rules_version, self._rules_loaded = -1, 0

    # -- wallet state ------------------------------------------------------------------------

    async def load_state(
        self, logins: Sequence[int], deals: Sequence[tuple[str, int]]
    ) -> tuple[dict[int, tuple[int, AccountState]], dict[tuple[str, int], DealJournal]]:
        """Accounts (with their versions) and what stands for deals: one round trip.

        The journals carry neither processed revisions nor seq: the apply script alone holds
        every revision, so it alone tells a duplicate from a stale seq.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for login in logins:
                pipe.hmget(keys.ACCOUNT.format(login=login), "v", "s")
            for server, deal in deals:
                pipe.hget(keys.DEAL.format(server=server, deal=deal), "standing")
            results = await pipe.execute()
        accounts = {
            login: (int(v or 0), decode_account(login, s))
            for login, (v, s) in zip(logins, results[: len(logins)], strict=True)
        }
        journals = {
            deal: DealJournal({}, decode_standing(raw))
            for deal, raw in zip(deals, results[len(logins) :], strict=True)
        }
        return accounts, journals

    async def apply(self, items: Sequence[ApplyItem]) -> list[tuple[str, str]]:
        """Apply settled revisions; per item ("ok", version) | ("dup", output) | ("stale", "")
        | ("conflict", "").

        Raises:
            StaleRules: the rules changed since they were folded; nothing was applied.
        """
        reply = await self._apply(
            keys=[keys.RULES_VERSION, keys.SETTLE_DIRTY],
            args=[str(self.rules_version), *(i.to_arg() for i in items)],
        )
        head = _text(reply[0])
        if head == "stale_rules":
            raise StaleRules(_text(reply[1]))
        return [(_text(reply[i]), _text(reply[i + 1])) for i in range(1, len(reply), 2)]

    # -- wallet commands (agents/storage/wallet.lua) -------------------------------------------

    async def wallet_snapshot(
        self, login: int, client: str | None
    ) -> tuple[int, AccountState, int]:
        """(account version, account, reward cents) in one round trip; 0 cents when no client."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.ACCOUNT.format(login=login), "v", "s")
            if client is not None:
                pipe.get(keys.REWARD.format(client=client))
            replies = await pipe.execute()
        v, s = replies[0]
        reward = int(replies[1] or 0) if client is not None else 0
        return int(v or 0), decode_account(login, s), reward

    async def apply_wallet(
        self,
        request_id: str,
        login: int,
        client: str | None,
        *,
        rules_version: int | None,
        answer: bytes,
        expected_version: int,
        account: AccountState | None,
        expected_reward: int,
        reward_delta: int,
    ) -> tuple[WalletStatus, bytes]:
        """Apply a decided command checked against its snapshot (wallet.lua); the payload is the
        answer (stored one for "dup").

        `client` names the reward wallet the decision read; `rules_version` the rules it read;
        `account` is None when the account does not change (a rejection).
        """
        reply = await self._wallet(
            keys=[
                keys.RULES_VERSION,
                keys.REQUEST.format(request_id=request_id),
                keys.ACCOUNT.format(login=login),
                *([keys.REWARD.format(client=client)] if client is not None else []),
            ],
            args=[
                "" if rules_version is None else str(rules_version),
                answer,
                expected_version,
                encode_account(account) if account is not None else "",
                expected_reward,
                reward_delta,
            ],
        )
        status: WalletStatus = _text(reply[0])  # type: ignore[assignment]
        return status, _bytes(reply[1])

    # -- IB settlement per payout slot (agents/storage/settle.lua) -----------------------------

    async def payable_slots(self, cutoff_s: float, max_slots: int) -> dict[str, dict[str, str]]:
        """The dirty slots payable at `cutoff_s` (at most `max_slots`), each with its tier lots
        per IB (10^-10 lots, as stored: `claim_settlements` checks they did not move)."""
        slots = [
            _text(s)
            for s in await self.redis.zrangebyscore(
                keys.SETTLE_DIRTY, "-inf", cutoff_s, start=0, num=max_slots
            )
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.hgetall(keys.TIER_LOTS.format(slot=slot))
            lots = await pipe.execute()
        return {
            slot: {_text(ib): _text(units) for ib, units in per_ib.items()}
            for slot, per_ib in zip(slots, lots, strict=True)
        }

    async def claim_settlements(
        self,
        slots: Sequence[str],
        bonuses: Sequence[tuple[str, str, str, int]],
        cutoff_s: float,
        now_s: float,
        lease_until_s: float,
        max_records: int,
    ) -> list[bytes]:
        """Settle `slots` (those still dirty and payable at `cutoff_s`) and lease the outbox
        records due (new ones and those whose lease ran out) until `lease_until_s`.

        Args:
            bonuses: (slot, ib, lots as read by `payable_slots`, bonus cents at those lots).
        """
        index = {slot: i for i, slot in enumerate(slots, start=1)}
        slot_keys: list[str] = []
        for slot in slots:
            slot_keys += [
                keys.SETTLE_SLOT.format(slot=slot),
                keys.SETTLE_EMITTED.format(slot=slot),
                keys.TIER_LOTS.format(slot=slot),
            ]
        flat: list[str | int] = []
        for slot, ib, units, bonus in bonuses:
            flat += [index[slot], ib, units, bonus]
        claimed = await self._settle(
            keys=[keys.SETTLE_DIRTY, keys.SETTLE_OUTBOX, *slot_keys],
            args=[
                repr(cutoff_s),
                repr(now_s),
                repr(lease_until_s),
                max_records,
                len(slots),
                *slots,
                *flat,
            ],
        )
        return [_bytes(raw) for raw in claimed]

    async def settlement_journal(self) -> dict[str, dict[str, tuple[int, int]]]:
        """What the fill path summed per payout slot and IB: {slot: {ib: (cents, count)}}.

        The totals the settlement events report from (`reconcile --redis` compares them with
        the credits on the topic): every applied commission credit and reversal, once.
        """
        prefix = keys.SETTLE_SLOT.format(slot="")
        own = {keys.SETTLE_DIRTY, keys.SETTLE_OUTBOX}
        slots: list[str] = []
        async for raw in self.redis.scan_iter(match=f"{prefix}*", count=1000):
            key = _text(raw)
            if key not in own:
                slots.append(key.removeprefix(prefix))
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.hgetall(keys.SETTLE_SLOT.format(slot=slot))
            hashes = await pipe.execute()
        journal: dict[str, dict[str, tuple[int, int]]] = {}
        for slot, fields in zip(slots, hashes, strict=True):
            totals = {_text(k): int(v) for k, v in fields.items()}
            journal[slot] = {
                field[:-2]: (amount, totals.get(field[:-2] + "|n", 0))
                for field, amount in totals.items()
                if field.endswith("|c")
            }
        return journal

    async def confirm_settlements(self, records: Sequence[bytes]) -> None:
        """Take published settlement records out of the outbox for good."""
        if records:
            await self.redis.zrem(keys.SETTLE_OUTBOX, *records)

    # -- parked fills (agents/storage/apply.lua parks them, unpark.lua releases them) ---------

    async def parked_summary(self) -> tuple[int, float | None]:
        """How many fills are parked, and when the oldest was parked (epoch seconds)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.PARKED_ALL)
            pipe.zrange(keys.PARKED_ALL, 0, 0, withscores=True)
            count, oldest = await pipe.execute()
        return int(count), (float(oldest[0][1]) if oldest else None)

    async def parked_since(self, cutoff_s: float, limit: int) -> list[ParkedFill]:
        """The fills parked at or before `cutoff_s`, oldest first."""
        rows = await self.redis.zrangebyscore(
            keys.PARKED_ALL, "-inf", cutoff_s, start=0, num=limit, withscores=True
        )
        parked = []
        for raw, score in rows:  # type: ignore[str-unpack]  # withscores: (member, score) pairs
            login, _, member = _text(raw).partition("|")
            parked.append(ParkedFill(int(login), member, float(score)))
        return parked

    async def parked_logins(self) -> list[int]:
        """The logins with parked fills."""
        return sorted(int(_text(m)) for m in await self.redis.smembers(keys.PARKED_LOGINS))

    async def parked_of(self, login: int) -> list[ParkedFill]:
        """A login's parked fills in close-time order (ties: in the order they were parked)."""
        members = await self.redis.zrange(keys.PARKED.format(login=login), 0, -1)
        return [ParkedFill(login, _text(m)) for m in members]

    async def unpark(self, fills: Sequence[tuple[ParkedFill, str, int, str]], *, dead: bool) -> int:
        """Take (parked fill, server, deal, revision) out of the park once published; returns
        how many left (a fill parked again meanwhile stays, unless `dead`)."""
        if not fills:
            return 0
        entries = [
            orjson.dumps(
                {
                    "k": keys.PARKED.format(login=p.login),
                    "m": p.member,
                    "l": f"{p.login}|{p.member}",
                    "d": keys.DEAL.format(server=server, deal=deal),
                    "r": revision,
                    "n": str(p.login),
                }
            )
            for p, server, deal, revision in fills
        ]
        removed = await self._unpark(
            keys=[keys.PARKED_ALL, keys.PARKED_LOGINS],
            args=["dead" if dead else "settled", *entries],
        )
        return int(removed)

    # -- journals, for support (`explain --live`) ------------------------------------------------

    async def deal_history(self, server: str, deal: int) -> list[tuple[JournalEntry, Output]]:
        """Every revision applied to the deal, in the order applied, with what it emitted."""
        fields = await self.redis.hgetall(keys.DEAL.format(server=server, deal=deal))
        by_name = {_text(k): v for k, v in fields.items()}
        numbered = sorted(
            (
                (int(name[2:]), decode_journal_entry(raw))
                for name, raw in by_name.items()
                if name.startswith("j:")
            ),
            key=lambda pair: pair[0],
        )
        return [
            (entry, decode_output(by_name[f"rev:{entry.revision}"])[0]) for _, entry in numbered
        ]

    async def deal_repeats(self, server: str, deal: int) -> tuple[int, int]:
        """How many messages of the deal were duplicates and how many stale (counted by apply)."""
        dups, stales = await self.redis.hmget(
            keys.DEAL.format(server=server, deal=deal), "dups", "stales"
        )
        return int(dups or 0), int(stales or 0)

    async def login_deals(self, login: int) -> list[tuple[str, int]]:
        """The login's deals as (server, deal), by close_time."""
        members = await self.redis.zrange(keys.LOGIN_DEALS.format(login=login), 0, -1)
        return [(server, int(deal)) for server, deal in (_text(m).rsplit(":", 1) for m in members)]

    # -- late re-settlement (agents/late.py; resettle.lua applies it) ---------------------------

    async def resettle_jobs(self, limit: int) -> list[ResettleJob]:
        """The oldest pending re-settlement jobs, in the order their changes were appended."""
        return [ResettleJob.from_json(raw) for raw in await self.redis.lrange(
            keys.RESETTLE_JOBS, 0, limit - 1
        )]  # fmt: skip

    async def pending_resettle_jobs(self) -> int:
        return int(await self.redis.llen(keys.RESETTLE_JOBS))

    async def settled_deals(
        self, login: int, since_epoch: int
    ) -> tuple[int, AccountState, list[StoredDeal]]:
        """The login's account (version, state) and its indexed deals closed at or after
        `since_epoch`, each with its last journal entry and what stands."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.ACCOUNT.format(login=login), "v", "s")
            pipe.zrangebyscore(keys.LOGIN_SETTLED.format(login=login), since_epoch, "+inf")
            (v, state), members = await pipe.execute()
        deals = [(server, int(deal)) for server, deal in (_text(m).rsplit(":", 1) for m in members)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for server, deal in deals:
                pipe.hmget(keys.DEAL.format(server=server, deal=deal), "n", "standing")
            heads = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for (server, deal), (n, _) in zip(deals, heads, strict=True):
                pipe.hget(keys.DEAL.format(server=server, deal=deal), f"j:{_text(n or b'0')}")
            entries = await pipe.execute()
        stored = [
            StoredDeal.of(server, deal, entry, standing)
            for (server, deal), (_, standing), entry in zip(deals, heads, entries, strict=True)
            if entry is not None
        ]
        return int(v or 0), decode_account(login, state), stored

    async def apply_resettle(
        self,
        job: ResettleJob,
        login: int,
        expected_version: int,
        account: AccountState,
        outputs: Sequence[str],
        deals: Sequence[ResettleDeal],
    ) -> tuple[str, list[str]]:
        """Apply a login's re-settlement (resettle.lua): ("ok", []) | ("dup", the outputs
        stored then) | ("conflict", []) | ("stale_rules", [])."""
        status, payload = await self._resettle(
            keys=[
                keys.RULES_VERSION,
                keys.SETTLE_DIRTY,
                keys.RESETTLE_DONE.format(job=job.id),
                keys.ACCOUNT.format(login=login),
            ],
            args=[
                str(self.rules_version),
                str(login),
                expected_version,
                encode_account(account),
                orjson.dumps(list(outputs)),
                *(d.to_arg() for d in deals),
            ],
        )
        head = _text(status)
        return head, (orjson.loads(payload) if head == "dup" else [])

    async def resettled(self, job: ResettleJob, login: int) -> list[str] | None:
        """The outputs the login's re-settlement for `job` emitted, if it was applied."""
        raw = await self.redis.hget(keys.RESETTLE_DONE.format(job=job.id), str(login))
        return None if raw is None else list(orjson.loads(raw))

    async def finish_resettle_job(self, job: ResettleJob) -> None:
        """Remove a job whose outputs are published, with what it recorded for reruns."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(keys.RESETTLE_JOBS, 1, (job.raw or job.to_json()).decode())
            pipe.delete(keys.RESETTLE_DONE.format(job=job.id))
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def reward_balance(self, client: str) -> Decimal:
        """The client's JM USD reward wallet (support's `explain --login`, and tests)."""
        raw = await self.redis.get(keys.REWARD.format(client=client))
        return Decimal(int(raw or 0)) / 100

    async def account(self, login: int) -> tuple[int, AccountState]:
        v, s = await self.redis.hmget(keys.ACCOUNT.format(login=login), "v", "s")
        return int(v or 0), decode_account(login, s)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()

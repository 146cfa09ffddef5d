"""Wallet commands (SPEC 6): decode, decide with engine.wallet, apply with one Lua script.

`WalletCommandHandler.handle(records)` turns a batch of wallet-command.v1 records into the
wallet-event.v1 answers to publish (topic wallet-events.v1, key = login).

Each command is decided purely (`engine.wallet`) on a snapshot of the account HASH and the
client's reward wallet, then applied by agents/storage/wallet.lua (through the store), which

* returns the stored answer when the request_id was answered before (the same request twice
  changes nothing and re-emits the same event, byte for byte);
* otherwise checks the snapshot by compare-and-set (account version, reward cents, rules
  version) and applies the decision together with its answer, or reports a conflict, after
  which the handler re-reads and decides again.

The decision instant is the command's Kafka timestamp (truncated to the second), so a replay
of the topic decides the same way.

A command that is not JSON or breaks wallet-command.v1 gets no answer: wallet-event.v1 has
no event for it (and no request_id may be trustworthy), so it is logged, counted as
`rebate_wallet_commands_total{result="invalid"}` and skipped. Every answer is checked against
wallet-event.v1 before it is published; an answer the schema cannot express yet (the engine's
`bonus_rejected`) is stored, logged and counted, but not published.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

import schemas
from agents.messages import Outgoing, Record
from agents.metrics import Metrics
from agents.storage.store import RedisStore
from engine import __version__
from engine.credits import WalletEvent
from engine.money import cents
from engine.state import AccountState
from engine.wallet import decide_allocation, decide_bonus_grant, wire_event

__all__ = ["COMMANDS", "WalletCommandHandler", "WalletConflict"]

log = logging.getLogger("rebate.wallet")

COMMANDS = ("allocate_jm", "grant_bonus")
_ACCEPTED = frozenset({"jm_allocation_accepted", "bonus_granted"})
_MAX_ROUNDS = 32  # compare-and-set retries for one command (fills move the same balances)


class WalletConflict(RuntimeError):
    """A command kept conflicting with concurrent changes; the batch is retried later."""


@dataclass(frozen=True, slots=True)
class _Decision:
    answer: bytes  # the wallet-event JSON, as stored and published
    account: AccountState | None  # None when the account does not change
    reward_delta_cents: int


class WalletCommandHandler:
    def __init__(self, store: RedisStore, metrics: Metrics, events_topic: str) -> None:
        self.store = store
        self.metrics = metrics
        self.events_topic = events_topic

    async def handle(self, records: Sequence[Record]) -> list[Outgoing]:
        """Answer a batch of commands, in order; raises redis errors (the caller retries)."""
        out: list[Outgoing] = []
        for record in records:
            command = self._decode(record)
            if command is None:
                continue
            name, result, answer = await self._apply(command, _decision_time(record))
            self.metrics.wallet_commands.labels(name, result).inc()
            event = orjson.loads(answer)
            if errors := list(schemas.iter_errors("wallet-event.v1", event)):
                log.error(
                    "wallet answer %s for request %r not publishable (wallet-event.v1: %s)",
                    event.get("event"),
                    command["request_id"],
                    errors[0].message,
                )
                continue
            out.append(Outgoing(self.events_topic, str(event["login"]).encode(), answer))
        return out

    def _decode(self, record: Record) -> dict[str, Any] | None:
        try:
            data: Any = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError as exc:
            self._invalid(record, None, f"not JSON: {exc}")
            return None
        try:
            schemas.validate("wallet-command.v1", data)
        except schemas.SchemaError as exc:
            # The path and the failed check only: the message quotes the offending value,
            # which may be personal data (a name sent where an id belongs).
            self._invalid(record, data, f"{exc.path}: fails '{exc.keyword}'")
            return None
        command: dict[str, Any] = data
        return command

    def _invalid(self, record: Record, data: Any, why: str) -> None:
        name = data.get("command") if isinstance(data, dict) else None
        self.metrics.wallet_commands.labels(
            name if name in COMMANDS else "unknown", "invalid"
        ).inc()
        log.warning(
            "invalid wallet command at %s[%d]@%d skipped: %s",
            record.topic,
            record.partition,
            record.offset,
            why,
        )

    async def _apply(self, command: dict[str, Any], at: datetime) -> tuple[str, str, bytes]:
        """(command, result, answer) once the script accepted the decision or found a dup."""
        name: str = command["command"]
        login = int(command["login"])
        # Only an allocation reads the rules and the client's reward wallet.
        allocates = name == "allocate_jm"
        client: str | None = command["client"] if allocates else None
        if allocates and self.store.rules_version < 0:
            await self.store.refresh_rules()
        for _ in range(_MAX_ROUNDS):
            version, account, reward = await self.store.wallet_snapshot(login, client)
            decision = self._decide(command, account, reward, at)
            status, payload = await self.store.apply_wallet(
                command["request_id"],
                login,
                client,
                rules_version=self.store.rules_version if allocates else None,
                answer=decision.answer,
                expected_version=version,
                account=decision.account,
                expected_reward=reward,
                reward_delta=decision.reward_delta_cents,
            )
            if status == "dup":
                return name, "duplicate", payload
            if status == "ok":
                event = orjson.loads(decision.answer)["event"]
                return name, "accepted" if event in _ACCEPTED else "rejected", decision.answer
            if status == "stale_rules":
                await self.store.refresh_rules()
            # "conflict": the account or the reward wallet moved: read again and decide again
        raise WalletConflict(
            f"{name} {command['request_id']!r} conflicted {_MAX_ROUNDS} times in a row"
        )

    def _decide(
        self, command: dict[str, Any], account: AccountState, reward_cents: int, at: datetime
    ) -> _Decision:
        request_id: str = command["request_id"]
        if command["command"] == "allocate_jm":
            allocation = decide_allocation(
                request_id,
                command["client"],
                int(command["login"]),
                Decimal(command["amount"]),
                self.store.book,
                Decimal(reward_cents) / 100,
                account,
                at,
            )
            return _Decision(
                _wire(allocation.event),
                allocation.account if allocation.accepted else None,
                cents(allocation.reward_delta),
            )
        granted_at = command.get("granted_at")
        grant = decide_bonus_grant(
            request_id,
            int(command["login"]),
            command["bonus_id"],
            Decimal(command["amount_usd"]),
            account,
            datetime.fromisoformat(granted_at) if granted_at else at,
        )
        return _Decision(_wire(grant.event), grant.account if grant.accepted else None, 0)


def _wire(event: WalletEvent) -> bytes:
    return orjson.dumps(wire_event(event, __version__))


def _decision_time(record: Record) -> datetime:
    """The command's Kafka timestamp (deterministic on replay); now if the record has none."""
    if record.timestamp_ms is None:
        at = datetime.now(UTC)
    else:
        at = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
    # Whole seconds: the answer states the instant to the second, the state must agree.
    return at.replace(microsecond=0)

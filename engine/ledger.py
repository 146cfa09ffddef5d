"""The in-memory ledger: wallet state and deal journals for the offline replay and the tests.

It applies each `Settlement` exactly as the Redis Lua script does (agents/storage/store.py):
once per fill revision, journal and state together.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from engine.fill import Fill
from engine.money import ZERO
from engine.rules import RuleBook
from engine.seed import Seed
from engine.settle import UNCHANGED_OUTCOMES, Settlement, settle
from engine.state import AccountState, DealJournal
from engine.wallet import decide_allocation, decide_bonus_grant

__all__ = ["Ledger"]


class Ledger:
    def __init__(self, book: RuleBook) -> None:
        self.book = book
        self.accounts: dict[int, AccountState] = {}
        self.journals: dict[tuple[str, int], DealJournal] = {}
        self.rewards: dict[str, Decimal] = {}
        self.answers: dict[str, object] = {}  # request_id -> the first answer (idempotency)

    @classmethod
    def from_seed(cls, seed: Seed, depth_limit: int = 10) -> Ledger:
        ledger = cls(seed.rulebook(depth_limit))
        ledger.rewards.update(seed.reward_wallets)
        for login, allocation in seed.allocations:
            account = ledger.account(login)
            ledger.accounts[login] = replace(
                account, allocations=(*account.allocations, allocation)
            )
        for login, bonus in seed.bonuses:
            account = ledger.account(login)
            ledger.accounts[login] = replace(account, bonuses=(*account.bonuses, bonus))
        return ledger

    def account(self, login: int) -> AccountState:
        return self.accounts.get(login) or AccountState(login)

    def process(self, fill: Fill) -> Settlement:
        """Settle a fill revision and apply it (raises ConfigError for unresolvable rules)."""
        key = (fill.server, fill.deal)
        journal = self.journals.get(key) or DealJournal()
        result = settle(fill, self.book, self.account(fill.login), journal)
        if result.outcome in UNCHANGED_OUTCOMES:
            return result
        self.journals[key] = journal.record(fill.revision, result.output, result.standing, fill.seq)
        self.accounts[fill.login] = result.account
        for client, delta in result.reward_deltas:
            self.rewards[client] = self.rewards.get(client, ZERO) + delta
        return result

    def allocate_jm(
        self, request_id: str, client: str, login: int, amount: Decimal, at: datetime
    ) -> object:
        if request_id in self.answers:
            return self.answers[request_id]
        decision = decide_allocation(
            request_id,
            client,
            login,
            amount,
            self.book,
            self.rewards.get(client, ZERO),
            self.account(login),
            at,
        )
        if decision.accepted:
            self.accounts[login] = decision.account
            self.rewards[client] = self.rewards.get(client, ZERO) + decision.reward_delta
        self.answers[request_id] = decision
        return decision

    def grant_bonus(
        self, request_id: str, login: int, bonus_id: str, amount_usd: Decimal, at: datetime
    ) -> object:
        if request_id in self.answers:
            return self.answers[request_id]
        decision = decide_bonus_grant(
            request_id, login, bonus_id, amount_usd, self.account(login), at
        )
        if decision.accepted:
            self.accounts[login] = decision.account
        self.answers[request_id] = decision
        return decision

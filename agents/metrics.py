"""Prometheus metrics the worker exports (names follow Prometheus conventions, labels bounded).

Every label value comes from a closed set (outcome, kind, currency, reason, op, command, result,
topic/partition of our own topics): never a login, deal, client or IB id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from engine.settle import OUTCOMES

__all__ = ["CRM_OUTCOMES", "Metrics"]

CRM_OUTCOMES = ("applied", "duplicate", "dead_lettered")

_OUTCOMES = (*OUTCOMES, "dead_lettered")  # the engine's outcomes, plus the dead letters

# Fill-to-credit latency buckets: the SLO is 50 ms p99 at 1,000 fills/s, so resolve 1 ms .. 10 s.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000)


class Metrics:
    """All engine metrics, on their own registry so tests and several workers never collide."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.info = Info("rebate_engine", "Engine build information", registry=r)
        self.fills = Counter(
            "rebate_fills",
            "Fills consumed, by outcome (credited, not_earning, ignored, duplicate, stale,"
            " dead_lettered)",
            ["outcome"],
            registry=r,
        )
        self.fill_reasons = Counter(
            "rebate_fill_reasons",
            "Fills that earned less than their plan, by reason (min_hold, self_trade_upline, "
            "demo, duplicate, ...; a fill with two reasons counts under each)",
            ["reason"],
            registry=r,
        )
        self.credits = Counter(
            "rebate_credits", "Credit events published, by kind", ["kind"], registry=r
        )
        self.credit_amount = Counter(
            "rebate_credit_amount",
            "Sum of absolute credit amounts published, by kind and currency (a reversal's "
            "amount counts under kind=reversal: counters only go up)",
            ["kind", "currency"],
            registry=r,
        )
        self.dead_letters = Counter(
            "rebate_dead_letters", "Fills sent to the dead-letter topic, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.fill_to_credit = Histogram(
            "rebate_fill_to_credit_seconds",
            "Seconds from the fill's Kafka timestamp to its credits being acknowledged",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "rebate_batch_size", "Fills per processed batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.redis_seconds = Histogram(
            "rebate_redis_seconds",
            "Redis round-trip time, by operation",
            ["op"],
            buckets=_REDIS_BUCKETS,
            registry=r,
        )
        self.redis_up = Gauge("rebate_redis_up", "1 when the last Redis call succeeded", registry=r)
        self.consumer_lag = Gauge(
            "rebate_consumer_lag_messages",
            "Messages behind the partition's high watermark",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "rebate_consumer_lag_seconds",
            "Age of the newest fill processed, in seconds (lag in time)",
            registry=r,
        )
        self.pauses = Counter(
            "rebate_consumer_pauses",
            "Times consumption paused because Redis did not answer (shorter than a scrape too)",
            registry=r,
        )
        self.paused = Gauge(
            "rebate_consumer_paused", "1 while consumption is paused (Redis unavailable)",
            registry=r,
        )  # fmt: skip
        self.rebalance_seconds = Gauge(
            "rebate_consumer_rebalance_seconds",
            "Seconds this worker has been joining its consumer group without a completed "
            "rebalance (since it started, or since its partitions were revoked); 0 once the "
            "group assigned it partitions (none is an assignment too)",
            registry=r,
        )
        self.partitions_assigned = Gauge(
            "rebate_partitions_assigned", "fills.v1 partitions assigned to this worker", registry=r
        )
        self.wallet_commands = Counter(
            "rebate_wallet_commands",
            "Wallet commands handled, by command and result",
            ["command", "result"],
            registry=r,
        )
        self.settlements = Counter(
            "rebate_settlements", "Hourly IB settlement events emitted, by type", ["type"],
            registry=r,
        )  # fmt: skip
        self.crm_events = Counter(
            "rebate_crm_events",
            "Back-office events consumed, by type (unknown when undecodable) and outcome "
            "(applied, duplicate, dead_lettered)",
            ["type", "outcome"],
            registry=r,
        )
        self.crm_dead_letters = Counter(
            "rebate_crm_dead_letters",
            "Back-office events sent to their dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.direct_clients = Counter(
            "rebate_direct_clients",
            "Clients registered without an IB, by reason (no_ref_code, unknown_ref_code)",
            ["reason"],
            registry=r,
        )
        self.parked_fills = Gauge(
            "rebate_parked_fills",
            "Fills parked because their login is not attributed yet (waiting for the account)",
            registry=r,
        )
        self.parked_oldest_seconds = Gauge(
            "rebate_parked_oldest_seconds",
            "Seconds the oldest parked fill has waited (0 when none is parked)",
            registry=r,
        )
        self.parked_released = Counter(
            "rebate_parked_fills_released",
            "Parked fills released, by outcome (settled: their account arrived; "
            "dead_lettered: park_hours ran out)",
            ["outcome"],
            registry=r,
        )
        self.resettled_deals = Counter(
            "rebate_resettled_deals",
            "Deals settled again because a back-office change arrived after them (late_change)",
            registry=r,
        )
        self.resettle_jobs_pending = Gauge(
            "rebate_resettle_jobs_pending",
            "Late changes whose re-settlement is not done yet (jobs in Redis)",
            registry=r,
        )

        self._zero_known_labels()

    def _zero_known_labels(self) -> None:
        """Create every bounded label set at 0, so rate() and increase() see the first event."""
        from engine import crm  # noqa: PLC0415
        from engine.credits import KINDS  # noqa: PLC0415
        from engine.eligibility import REASONS  # noqa: PLC0415
        from engine.errors import DEAD_LETTER_REASONS  # noqa: PLC0415

        for outcome in _OUTCOMES:
            self.fills.labels(outcome)
        for why in REASONS:
            self.fill_reasons.labels(why)
        for kind in KINDS:
            self.credits.labels(kind)
            self.credit_amount.labels(kind, "JMUSD" if kind == "loyalty_accrual" else "USD")
        self.credit_amount.labels("reversal", "JMUSD")
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for event_type in (*crm.EVENT_TYPES, "unknown"):
            for outcome in CRM_OUTCOMES:
                self.crm_events.labels(event_type, outcome)
        for crm_reason in crm.REASONS:
            self.crm_dead_letters.labels(crm_reason)
        for direct in crm.DIRECT_CLIENT_REASONS:
            self.direct_clients.labels(direct)
        for outcome in ("settled", "dead_lettered"):
            self.parked_released.labels(outcome)

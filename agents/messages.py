"""The worker's message records: what it consumes, what it publishes, and a batch's result."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BatchResult", "Outgoing", "Record", "Topics"]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record (what the DLQ headers and the latency metric need)."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish: topic, key, value and headers, as the producer takes them."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics the fill processor publishes to (built from Settings: agents.topics)."""

    credits: str
    dead_letters: str
    wallet_events: str


@dataclass
class BatchResult:
    """What a batch of fills produced, each kind in its own list, in the order produced."""

    credits: list[Outgoing] = field(default_factory=list)
    wallet_events: list[Outgoing] = field(default_factory=list)
    dead_letters: list[Outgoing] = field(default_factory=list)
    timestamps_ms: list[int] = field(default_factory=list)

    @property
    def outgoing(self) -> list[Outgoing]:
        """Everything to publish (each topic's messages keep their order)."""
        return [*self.credits, *self.wallet_events, *self.dead_letters]

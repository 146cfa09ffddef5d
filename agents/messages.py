"""The worker's message records: what it consumes, what it publishes, and a batch's result."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BatchResult", "Outgoing", "Record", "Topics", "dead_letter"]

_DLQ_MAX_VALUE = 256 * 1024


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


def dead_letter(record: Record, topic: str, reason: str, message: str) -> Outgoing:
    """`record` for a dead-letter topic, with headers naming the error and where it came from."""
    value = record.value or b""
    headers = [
        ("error", reason.encode()),
        ("error_message", message.encode()[:1000]),
        ("original_topic", record.topic.encode()),
        ("original_partition", str(record.partition).encode()),
        ("original_offset", str(record.offset).encode()),
    ]
    if len(value) > _DLQ_MAX_VALUE:
        # The original stays in its topic at the offset named above; a dead letter larger
        # than the producer's request limit would fail the whole batch instead.
        headers.append(("truncated_from_bytes", str(len(value)).encode()))
        value = value[:_DLQ_MAX_VALUE]
    return Outgoing(topic, b"", value, tuple(headers))

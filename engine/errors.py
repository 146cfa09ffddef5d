"""The two ways input can be wrong: a bad fill (dead-lettered) and bad configuration."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["DEAD_LETTER_REASONS", "BadFill", "ConfigError", "DeadLetterReason"]

# Closed set of dead-letter reasons (SPEC 8); metrics label values come only from here.
DeadLetterReason = Literal[
    "undecodable",
    "schema",
    "not_a_number",
    "negative_volume",
    "unknown_platform",
    "close_before_open",
    "missing_usd_rate",
    "impossible_value",
    "ib_cycle",
    "unknown_plan",
    "unknown_ib",
    "unknown_client",
    "unattributed",  # parked longer than park_hours: its account never arrived (SPEC 4.2 r2)
]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = get_args(DeadLetterReason)


class BadFill(ValueError):
    """A fill that breaks fill.v1 or carries impossible values.

    Attributes:
        reason: one of DEAD_LETTER_REASONS (bounded: used as a metric label).
        field: the offending field, when there is one.
    """

    def __init__(self, reason: DeadLetterReason, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.reason = reason
        self.field = field


class ConfigError(ValueError):
    """Rules that cannot be applied: an IB cycle, an unknown plan/IB/client reference.

    Found when loading a seed (the load fails) or at lookup time for a fill (the fill is
    dead-lettered with `reason`).
    """

    def __init__(self, reason: DeadLetterReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason

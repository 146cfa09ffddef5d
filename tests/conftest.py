"""Fixtures every test tier may use. Tier-specific ones live in the tier's own conftest."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of names no other test (or earlier run against the same broker) uses.

    `unique_name("fills")` -> `fills-test_round_trip-3f9c1a2b`: readable in broker listings,
    and limited to the characters Kafka allows in topic names.
    """

    def make(prefix: str) -> str:
        test = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make

"""Fixtures every test tier may use. Tier-specific ones live in the tier's own conftest."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from hypothesis import settings

# Property tests judge results, never speed: the machine is shared and a slow example under
# load is not a failure (Hypothesis' default 200 ms deadline made them flaky there).
settings.register_profile("rebate-engine", deadline=None, print_blob=True)
settings.load_profile("rebate-engine")


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

"""Agents-tier fixtures: a private redis-server per module (never the shared one on 6379)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from harness.embedded import EmbeddedRuntime


@pytest.fixture(scope="module")
def private_redis_url() -> Iterator[str]:
    with EmbeddedRuntime(kafka=False) as runtime:
        yield runtime.redis_url


@pytest.fixture
async def redis(private_redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(private_redis_url)
    await client.flushdb()
    yield client
    await client.aclose()

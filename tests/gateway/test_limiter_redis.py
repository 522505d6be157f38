"""The limiter on the gateway's Redis client (`gateway_plugins.runtime.redis_client`,
redis-py's client and pool): connections Redis dropped (a restart) are replaced without
failing a call; a Redis that does not answer costs a call one timeout, not a retry after
it, and the call is admitted (fail open); a script Redis does not know (restarted,
`SCRIPT FLUSH`) is sent whole."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway_plugins.rate_limits import RateLimiter
from gateway_plugins.runtime import redis_client
from portal.config.plugin_settings import PlanLimits

pytestmark = pytest.mark.redis

PLAN = PlanLimits(rpm=1000, max_parallel_requests=1000)
DEADLINE = 300


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


async def connections_of(client: aioredis.Redis, redis_url: str) -> list[str]:
    """The ids of the connections Redis has open for `client` (named for the occasion)."""
    name = f"limiter-{uuid.uuid4().hex[:8]}"
    await client.client_setname(name)
    async with aioredis.Redis.from_url(redis_url) as other:
        return [c["id"] for c in await other.client_list() if c.get("name") == name]


async def admitted(limiter: RateLimiter, user: str) -> None:
    await (await limiter.admit(user, PLAN, DEADLINE)).release()


async def test_connections_redis_dropped_are_replaced_without_failing_a_call(
    client: aioredis.Redis, redis_url: str
) -> None:
    limiter, user = RateLimiter(client), f"user-{uuid.uuid4().hex}"
    await admitted(limiter, user)
    kept = await connections_of(client, redis_url)
    assert len(kept) == 1
    async with aioredis.Redis.from_url(redis_url) as other:
        assert await other.client_kill_filter(_id=kept[0]) == 1  # as a restart of Redis would

    await admitted(limiter, user)
    assert limiter.unavailable == 0  # checked, not failed open
    assert (await connections_of(client, redis_url))[0] not in kept


async def test_a_redis_that_does_not_answer_costs_a_call_one_timeout_then_fails_open() -> None:
    """A listener that accepts and never answers: the call is admitted unchecked after
    one socket timeout, on one connection (no retry of a timeout)."""
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    async with silent:
        mute = redis_client(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.2)
        limiter = RateLimiter(mute)
        await admitted(limiter, "someone")
        assert limiter.unavailable == 1 and len(accepted) == 1
        for writer in accepted:
            writer.close()
        await mute.aclose()


async def test_a_script_redis_does_not_know_is_sent_whole(
    client: aioredis.Redis,
) -> None:
    limiter, user = RateLimiter(client), f"user-{uuid.uuid4().hex}"
    await admitted(limiter, user)
    await client.script_flush()  # as a restart of Redis would
    await admitted(limiter, user)
    assert limiter.unavailable == 0

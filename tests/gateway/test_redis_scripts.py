"""The limiter's scripts on kept Redis connections (`gateway_plugins.redis_scripts`): calls
after the first borrow nothing from redis-py's pool; at most `keep` stay out after a
burst; a connection Redis dropped is replaced without failing the call; an error reply
keeps the connection usable; a script Redis does not know is sent whole."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway_plugins.redis_scripts import KeptScripts, Script
from tests.fixtures.gateway import eventually

pytestmark = pytest.mark.redis

ECHO = Script("return {KEYS[1], ARGV[1]}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client whose connections Redis lists under a name of their own."""
    client = aioredis.Redis.from_url(redis_url, client_name=f"kept-{uuid.uuid4().hex[:8]}")
    yield client
    await client.aclose()


async def connections_of(client: aioredis.Redis, redis_url: str) -> list[str]:
    """The ids of the connections Redis has open under `client`'s name."""
    name = client.connection_pool.connection_kwargs["client_name"]
    async with aioredis.Redis.from_url(redis_url) as other:
        return [c["id"] for c in await other.client_list() if c.get("name") == name]


async def open_connections_become(count: int, client: aioredis.Redis, redis_url: str) -> None:
    async def reached() -> bool:
        return len(await connections_of(client, redis_url)) == count

    await eventually(reached, seconds=30, what=f"{count} connections open")


async def test_one_connection_serves_calls_one_after_another(
    client: aioredis.Redis, redis_url: str
) -> None:
    scripts = KeptScripts(client)
    replies = [await scripts.run(ECHO, ["k"], [n]) for n in range(50)]
    assert replies == [[b"k", str(n).encode()] for n in range(50)]
    assert len(await connections_of(client, redis_url)) == 1 and scripts.idle == 1
    await scripts.close()
    await open_connections_become(0, client, redis_url)


async def test_at_most_keep_stay_open_after_a_burst(client: aioredis.Redis, redis_url: str) -> None:
    scripts = KeptScripts(client, keep=4)
    replies = await asyncio.gather(*(scripts.run(ECHO, ["k"], [n]) for n in range(20)))
    assert [reply[1] for reply in replies] == [str(n).encode() for n in range(20)]
    assert scripts.idle == 4
    await open_connections_become(4, client, redis_url)  # the others closed
    await scripts.close()


async def test_connections_redis_dropped_are_replaced_without_failing_a_call(
    client: aioredis.Redis, redis_url: str
) -> None:
    scripts = KeptScripts(client)
    await asyncio.gather(*(scripts.run(ECHO, ["k"], [n]) for n in range(3)))
    kept = await connections_of(client, redis_url)
    assert scripts.idle == len(kept) == 3
    async with aioredis.Redis.from_url(redis_url) as other:
        for connection in kept:  # as a restart of Redis would
            assert await other.client_kill_filter(_id=connection) == 1

    assert await scripts.run(ECHO, ["k"], ["after"]) == [b"k", b"after"]
    assert scripts.idle == 1  # the other two were dropped with the first, not one by one
    (replacement,) = await connections_of(client, redis_url)
    assert replacement not in kept
    await scripts.close()


async def test_a_redis_that_does_not_answer_costs_a_call_the_timeout(
    client: aioredis.Redis,
) -> None:
    """A listener that accepts and never answers: the call fails with redis-py's
    TimeoutError after the client's socket timeout, and the connection is not kept."""
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    async with silent, aioredis.Redis(port=port, socket_timeout=0.2) as mute:
        scripts = KeptScripts(mute)
        with pytest.raises(RedisTimeoutError):
            await scripts.run(ECHO, ["k"], ["unanswered"])
        assert scripts.idle == 0 and len(accepted) == 1
        accepted[0].close()


async def test_an_error_reply_keeps_the_connection(client: aioredis.Redis) -> None:
    scripts = KeptScripts(client)
    failing = Script("return redis.error_reply('refused by the script')")
    with pytest.raises(ResponseError, match="refused by the script"):
        await scripts.run(failing, [], [])
    assert scripts.idle == 1
    assert await scripts.run(ECHO, ["k"], ["after"]) == [b"k", b"after"]
    await scripts.close()


async def test_a_script_redis_does_not_know_is_sent_whole(client: aioredis.Redis) -> None:
    scripts = KeptScripts(client)
    unknown = Script(f"-- {uuid.uuid4()}\nreturn ARGV[1]")
    assert await client.script_exists(unknown.sha) == [False]
    assert await scripts.run(unknown, [], ["sent whole"]) == b"sent whole"
    assert await client.script_exists(unknown.sha) == [True]  # EVAL cached it: EVALSHA next
    assert await scripts.run(unknown, [], ["by sha"]) == b"by sha"
    await scripts.close()

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

from gateway_plugins.redis_scripts import KeptScripts, Script

pytestmark = pytest.mark.redis

ECHO = Script("return {KEYS[1], ARGV[1]}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def count_borrowed(client: aioredis.Redis) -> list[int]:
    """How many connections are taken from the client's pool from now on."""
    pool, counted = client.connection_pool, [0]
    borrow = pool.get_connection

    async def counting() -> object:
        counted[0] += 1
        return await borrow()

    pool.get_connection = counting  # type: ignore[method-assign]
    return counted


async def test_calls_after_the_first_borrow_nothing(client: aioredis.Redis) -> None:
    scripts = KeptScripts(client)
    borrowed = count_borrowed(client)
    replies = [await scripts.run(ECHO, ["k"], [n]) for n in range(50)]
    assert replies == [[b"k", str(n).encode()] for n in range(50)]
    assert borrowed[0] == 1 and scripts.idle == 1
    await scripts.close()
    assert scripts.idle == 0


async def test_at_most_keep_stay_out_after_a_burst(client: aioredis.Redis) -> None:
    scripts = KeptScripts(client, keep=4)
    replies = await asyncio.gather(*(scripts.run(ECHO, ["k"], [n]) for n in range(20)))
    assert [reply[1] for reply in replies] == [str(n).encode() for n in range(20)]
    assert scripts.idle == 4
    assert len(client.connection_pool._in_use_connections) == 4  # the kept ones only
    await scripts.close()
    assert not client.connection_pool._in_use_connections


async def test_a_connection_redis_dropped_is_replaced_without_failing_the_call(
    redis_url: str,
) -> None:
    name = f"kept-{uuid.uuid4().hex[:8]}"
    async with (
        aioredis.Redis.from_url(redis_url, client_name=name) as client,
        aioredis.Redis.from_url(redis_url) as other,
    ):
        scripts = KeptScripts(client)
        await scripts.run(ECHO, ["k"], ["first"])
        kept = [c["id"] for c in await other.client_list() if c.get("name") == name]
        assert len(kept) == 1
        assert await other.client_kill_filter(_id=kept[0]) == 1  # as a restart of Redis would

        assert await scripts.run(ECHO, ["k"], ["second"]) == [b"k", b"second"]
        assert scripts.idle == 1
        await scripts.close()


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

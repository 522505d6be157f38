"""The per-call Lua scripts (admission, the end of a call: `rate_limits`), sent on Redis
connections this module keeps.

Why: a command through redis-py's client and pool (the pool's lock, its connection check
that tries a read before every command, its observability hooks, the client's retry
wrapper, and a task per write for the socket timeout) cost 0.11–0.27 ms of CPU on this
machine; the same EVALSHA written and read on a kept connection, 0.06–0.15 ms
(bench/RESULTS.md). The connections are made as the client's pool makes them (URL, TLS,
password, database as configured) and redis-py still packs each command and parses its
reply (hiredis); only the per-command bookkeeping is skipped.

- Up to `keep` idle connections are kept; a call that finds none opens one, and one
  returned beyond `keep` is closed.
- Each round trip has one deadline, the client's socket timeout (redis-py's default,
  5 s): a Redis that does not answer costs a call at most that (then `rate_limits`
  fails open).
- A connection whose command failed on the way (a broken socket, a timeout, a cancelled
  read) is closed, never reused. One that was kept idle and turns out broken (Redis
  restarted meanwhile) is taken to mean they all are: every kept connection is closed
  and the command sent once more on a new one, as redis-py's client retries a
  connection error.
- A reply that is an error (`ResponseError`) leaves the connection as it was.
- A script Redis does not know (restarted, `SCRIPT FLUSH`) is sent whole once (EVAL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from hashlib import sha1
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["ClientScripts", "KeptScripts", "Script"]

Argument = str | int | float | bytes
DEFAULT_TIMEOUT_SECONDS = 5.0  # redis-py's own default socket timeout


class Script:
    """A Lua script, known by its SHA1 (`EVALSHA`)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = sha1(source.encode(), usedforsecurity=False).hexdigest()


class KeptScripts:
    """Runs scripts on connections made like `redis`'s own, up to `keep` kept idle."""

    __slots__ = ("_idle", "_keep", "_make", "_timeout")

    def __init__(self, redis: aioredis.Redis, keep: int = 32) -> None:
        pool = redis.connection_pool
        options = dict(pool.connection_kwargs)
        self._timeout = options.get("socket_timeout") or DEFAULT_TIMEOUT_SECONDS
        options["socket_timeout"] = None  # one deadline per round trip instead (`run`)
        self._make: Callable[[], AbstractConnection] = partial(pool.connection_class, **options)
        self._keep = keep
        self._idle: list[AbstractConnection] = []

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Argument]) -> Any:
        """The script's reply; RedisError (ConnectionError, TimeoutError, ResponseError…)
        when Redis does not give one."""
        if self._idle:
            try:
                return await self._run_on(self._idle.pop(), script, keys, args)
            except RedisConnectionError:  # kept across a restart of Redis, as the others
                await self.close()
        return await self._run_on(self._make(), script, keys, args)

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def _run_on(
        self,
        connection: AbstractConnection,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Argument],
    ) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                reply = await _evaluate(connection, script, keys, args)
        except ResponseError:
            await self._keep_or_close(connection)
            raise
        except TimeoutError as exc:  # asyncio's: the round trip ran out of time
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError(f"no reply from Redis within {self._timeout} s") from exc
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        await self._keep_or_close(connection)
        return reply

    async def _keep_or_close(self, connection: AbstractConnection) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            await connection.disconnect()

    async def close(self) -> None:
        """Close the kept connections (at shutdown, or once Redis dropped one)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()


class ClientScripts:
    """Runs scripts through redis-py's client and its pool (the library path)."""

    __slots__ = ("_redis",)

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Argument]) -> Any:
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            return await self._redis.eval(script.source, len(keys), *keys, *args)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        """Nothing of its own: the client's pool closes with the client."""


async def _evaluate(
    connection: AbstractConnection, script: Script, keys: Sequence[str], args: Sequence[Argument]
) -> Any:
    try:
        return await _command(connection, "EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await _command(connection, "EVAL", script.source, len(keys), *keys, *args)


async def _command(connection: AbstractConnection, *parts: Argument) -> Any:
    # `send_packed_command` connects a new connection first (AUTH, SELECT as configured).
    await connection.send_packed_command(connection.pack_command(*parts), check_health=False)
    return await connection.read_response()

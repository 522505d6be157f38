"""The per-call Lua scripts (admission, the end of a call: `rate_limits`), sent on Redis
connections kept out of redis-py's pool.

Why: a command through redis-py's client and pool (the pool's lock, its connection check
that tries a read before every command, its observability hooks, the client's retry
wrapper) cost 0.11–0.27 ms of CPU on this machine; the same EVALSHA written and read on
one of the pool's connections, 0.06–0.15 ms (bench/RESULTS.md). The connections are the
pool's own (URL, TLS, password, database as configured) and redis-py still packs the
command and parses the reply (hiredis); only the per-command bookkeeping is skipped.

- At most `keep` connections stay out of the pool; more are borrowed while calls need
  them and given back.
- A connection whose command failed on the way (a broken socket, a cancelled read) is
  disconnected by redis-py and goes back to the pool, which reconnects it when next
  used. One that was kept idle and failed is retried once on a fresh connection, as
  redis-py's client retries a connection error (Redis restarted meanwhile).
- A reply that is an error (`ResponseError`) leaves the connection as it was.
- A script Redis does not know (restarted, `SCRIPT FLUSH`) is sent whole once (EVAL).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha1
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["KeptScripts", "Script"]

Argument = str | int | float | bytes


class Script:
    """A Lua script, known by its SHA1 (`EVALSHA`)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = sha1(source.encode(), usedforsecurity=False).hexdigest()


class KeptScripts:
    """Runs scripts on up to `keep` connections kept out of `redis`'s pool."""

    __slots__ = ("_idle", "_keep", "_pool")

    def __init__(self, redis: aioredis.Redis, keep: int = 8) -> None:
        self._pool = redis.connection_pool
        self._keep = keep
        self._idle: list[AbstractConnection] = []

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Argument]) -> Any:
        """The script's reply; RedisError (ConnectionError, TimeoutError, ResponseError…)
        when Redis does not give one."""
        if self._idle:
            try:
                return await self._run_on(self._idle.pop(), script, keys, args)
            except RedisConnectionError:
                pass  # kept across a restart of Redis: once more, on a fresh connection
        fresh = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        return await self._run_on(fresh, script, keys, args)

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
            reply = await _evaluate(connection, script, keys, args)
        except ResponseError:
            await self._keep_or_return(connection)
            raise
        except BaseException:  # redis-py disconnected it; the pool reconnects it
            await self._pool.release(connection)
            raise
        await self._keep_or_return(connection)
        return reply

    async def _keep_or_return(self, connection: AbstractConnection) -> None:
        if len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            await self._pool.release(connection)

    async def close(self) -> None:
        """Give the kept connections back to the pool (before the client is closed)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._pool.release(connection)


async def _evaluate(
    connection: AbstractConnection, script: Script, keys: Sequence[str], args: Sequence[Argument]
) -> Any:
    try:
        return await _command(connection, "EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await _command(connection, "EVAL", script.source, len(keys), *keys, *args)


async def _command(connection: AbstractConnection, *parts: Argument) -> Any:
    await connection.send_packed_command(connection.pack_command(*parts), check_health=False)
    return await connection.read_response()

"""The connections the gateway's per-call statements borrow from SQLAlchemy's pool
(`portal.db.driver.checked_out`): each goes back when its call is done; a connection whose
statement broke is never used again, and one whose statement the server refused goes
back to the pool rolled back; when the server drops its connections (a restart) one
statement fails, not one per pooled connection, and the next calls succeed. On both
backends (`gateway_db`: as the gateway opens it)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import Integer, bindparam, event, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from portal.db import Database
from portal.db.driver import DriverStatement
from tests.fixtures.gateway import eventually

PLUS_ONE = DriverStatement(select(bindparam("x", type_=Integer()) + 1), "postgresql", "sqlite")
SERVER_REFUSED = (asyncpg.PostgresError, sqlite3.DatabaseError)
# asyncpg's "connection is closed", the server's notice that it was terminated, or the
# connection left mid-protocol by that notice when it arrived before the socket's end
CONNECTION_LOST = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.InternalClientError,
)
NO_SUCH_TABLE = DriverStatement(text("SELECT v FROM no_such_table"), "postgresql", "sqlite")


@contextmanager
def checkouts(database: Database) -> Iterator[list[int]]:
    """How many connections are checked out of the engine's pool meanwhile."""
    counted = [0]

    def checkout(*_: object) -> None:
        counted[0] += 1

    pool = database.engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    try:
        yield counted
    finally:
        event.remove(pool, "checkout", checkout)


def checked_out(database: Database) -> int:
    return database.engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]


async def fresh_read(connection: AsyncConnection, query: Any, params: Any = None) -> Any:
    """One value, read in a transaction of its own: PostgreSQL reads pg_stat_activity once
    per transaction, so a poll in the same one would see the first read's sessions forever
    (why the cancelled-statement test once waited its 30 s out)."""
    try:
        return await connection.scalar(query, params)
    finally:
        await connection.rollback()


async def plus_one(database: Database, x: int) -> int:
    async with database.per_call() as driver:
        rows = await driver.fetch(PLUS_ONE, {"x": x})
    return int(rows[0][0])


async def test_each_call_gives_its_connection_back(gateway_db: Database) -> None:
    started = asyncio.Event()
    waiting = 0

    async def slow_call(x: int) -> int:
        nonlocal waiting
        async with gateway_db.per_call() as driver:
            waiting += 1
            if waiting == 8:
                started.set()
            await started.wait()  # all eight hold a connection at once
            rows = await driver.fetch(PLUS_ONE, {"x": x})
        return int(rows[0][0])

    assert await asyncio.gather(*(slow_call(x) for x in range(8))) == list(range(1, 9))
    assert checked_out(gateway_db) == 0
    with checkouts(gateway_db) as counted:
        assert [await plus_one(gateway_db, x) for x in range(5)] == list(range(1, 6))
    assert counted[0] == 5 and checked_out(gateway_db) == 0


async def test_a_refused_statement_returns_its_connection_and_a_broken_one_is_dropped(
    gateway_db: Database,
) -> None:
    await plus_one(gateway_db, 0)
    pool = gateway_db.engine.sync_engine.pool
    idle = pool.checkedin()  # type: ignore[attr-defined]

    with pytest.raises(SERVER_REFUSED, match="no_such_table"):
        async with gateway_db.per_call() as driver:
            await driver.fetch(NO_SUCH_TABLE, {})
    assert checked_out(gateway_db) == 0  # back in the pool (rolled back there)
    assert pool.checkedin() == idle  # type: ignore[attr-defined]

    class Broken(Exception):
        pass

    with pytest.raises(Broken):
        async with gateway_db.per_call() as driver:
            await driver.fetch(PLUS_ONE, {"x": 1})
            broken = driver.connection
            raise Broken  # mid-call: the connection may be mid-protocol
    assert checked_out(gateway_db) == 0
    assert broken.is_closed()  # closed, never used again
    assert await plus_one(gateway_db, 41) == 42


@pytest.mark.postgres
async def test_a_cancelled_statement_never_reaches_the_next_call(gateway_db: Database) -> None:
    """PostgreSQL: a call cancelled while its statement runs (the client left) leaves the
    connection waiting for a reply; that connection is dropped, and the next call gets an
    answer of its own."""
    if not gateway_db.is_postgresql:
        pytest.skip("SQLite's inline statements run to the end before anything is cancelled")
    sleeping = DriverStatement(text("SELECT pg_sleep(60) -- the cancelled one"), "postgresql")

    async def call() -> None:
        async with gateway_db.per_call() as driver:
            await driver.fetch(sleeping, {})

    task = asyncio.create_task(call())
    async with gateway_db.engine.connect() as watcher:
        running = text(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%the cancelled one'"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        )

        async def started() -> Any:
            if task.done():  # it failed before it ran: say why, not "not within 30s"
                task.result()
            return await fresh_read(watcher, running)

        await eventually(started, seconds=30, what="the statement runs")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert checked_out(gateway_db) == 0
    assert [await plus_one(gateway_db, x) for x in range(3)] == [1, 2, 3]


async def server_pids(database: Database, count: int) -> list[int]:
    """The server pids of `count` pooled connections, held at once so that they differ."""
    all_in = asyncio.Event()
    pids: list[int] = []

    async def hold_one() -> None:
        async with database.per_call() as driver:
            pids.append(driver.connection.get_server_pid())  # type: ignore[union-attr]
            if len(pids) == count:
                all_in.set()
            await all_in.wait()

    await asyncio.gather(*(hold_one() for _ in range(count)))
    return pids


@pytest.mark.postgres
async def test_a_server_restart_costs_one_failed_statement_not_one_per_pooled_connection(
    db: Database, gateway_db: Database
) -> None:
    """PostgreSQL: when the server drops the pool's connections (a restart, a failover),
    the first statement that finds one closed fails and tells the pool: the others are
    replaced before they are used, so the next calls all succeed."""
    if not gateway_db.is_postgresql:
        pytest.skip("an inline SQLite connection has no server to lose")
    pids = await server_pids(gateway_db, 3)
    async with db.engine.connect() as admin:  # another engine: not one of the pool's
        for pid in pids:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        async def all_gone() -> bool:
            left = await fresh_read(
                admin,
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": pids},
            )
            return left == 0

        await eventually(all_gone, seconds=30, what="the pooled connections' backends ended")

    with pytest.raises(CONNECTION_LOST):
        await plus_one(gateway_db, 1)
    assert not set(await server_pids(gateway_db, 3)) & set(pids)  # each one fresh, none failed
    assert await plus_one(gateway_db, 2) == 3


@pytest.mark.postgres
async def test_a_connection_left_mid_protocol_by_the_server_replaces_every_pooled_one(
    gateway_db: Database,
) -> None:
    """The server's FATAL notice can reach a connection before its socket's end (seen once
    in the suite): asyncpg then refuses the next statement as "another operation is in
    progress" with the socket still open. That too means the server let go of them all:
    every pooled connection is replaced, and the next statements get fresh ones."""
    if not gateway_db.is_postgresql:
        pytest.skip("an inline SQLite connection has no server to lose")
    before = await server_pids(gateway_db, 3)

    with pytest.raises(asyncpg.InternalClientError):
        async with gateway_db.per_call():
            raise asyncpg.InternalClientError(
                "cannot switch to state 11; another operation (2) is in progress"
            )
    assert not set(await server_pids(gateway_db, 3)) & set(before)
    assert await plus_one(gateway_db, 2) == 3

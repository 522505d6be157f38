"""The async engine and session factory.

Services take an `AsyncSession` and never commit: the caller owns the transaction, so a
debit and its ledger row commit together (`async with db.transaction() as session`).
What must follow the commit (dropping the gateways' cached token checks) the services
register on that session themselves (`portal.db.effects.after_commit`); the transaction
runs it after the COMMIT and drops it on rollback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from portal.db import effects, sqlite_inline
from portal.db.driver import CoreDriver, Driver, checked_out
from portal.db.urls import is_sqlite, to_async_url

__all__ = ["Database", "Executor", "dialect_name", "open_database"]

Executor = AsyncSession | AsyncConnection
"""What the per-call money functions run their Core statements on: a session (the
portal's transactions) or a bare connection (the gateway's, `Database.core_transaction`)."""


def dialect_name(executor: Executor) -> str:
    if isinstance(executor, AsyncSession):
        return executor.get_bind().dialect.name
    return executor.dialect.name


log = logging.getLogger(__name__)


@dataclass
class Database:
    url: URL
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    session_info: dict[str, Any] = field(default_factory=dict)
    """Copied into each session's `info`: what an entry point tells the services through
    their session (the auth cache's Redis URL, `accounts.gateway_cache.use_redis`)."""
    checkpoint_wait_seconds: float = 0.0
    """How long `checkpoint()` retries while readers hold the WAL (the inline SQLite
    driver, whose busy_timeout is 0; with aiosqlite busy_timeout does the waiting)."""
    inline_sqlite: bool = False
    """SQLite on `portal.db.sqlite_inline` (the gateway), not aiosqlite."""
    by_driver: bool = True
    """Whether `per_call` sends by the driver (else SQLAlchemy Core, same statements)."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on any exception. Effects
        registered on the session (`portal.db.effects`) run after the commit, once the
        session is closed; a rollback drops them."""
        async with self.sessions() as session:
            session.info.update(self.session_info)
            collector = effects.attach(session)
            async with session.begin():
                yield session
        await collector.run()

    @asynccontextmanager
    async def core_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on a bare connection: no ORM session, so no after-commit effects
        (`transaction()` has them). For the gateway's per-call Core statements, where the
        session's bookkeeping cost ~0.5 ms of CPU per call on SQLite."""
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which every statement is its own transaction: no BEGIN and
        COMMIT round trips, for a statement that is atomic by itself (the gateway's
        per-call money statements on PostgreSQL)."""
        async with self.engine.connect() as connection:
            yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def sends_by_driver(self) -> bool:
        """Whether `per_call` sends by the driver: PostgreSQL, or SQLite on the inline
        driver, unless `by_driver` is off."""
        return self.by_driver and (self.is_postgresql or self.inline_sqlite)

    @asynccontextmanager
    async def per_call(self) -> AsyncIterator[Driver | CoreDriver]:
        """A connection for the gateway's per-call statements, sent by the driver itself
        where it can (`portal.db.driver` says why), else through SQLAlchemy Core (the
        library path beside it). On PostgreSQL in autocommit: each statement is its own
        transaction (the gateway sends single statements there). On SQLite the statements
        form one transaction (the inline driver: BEGIN IMMEDIATE at its first write),
        committed at the end and rolled back on an error."""
        if not self.sends_by_driver:
            opened = self.autocommit() if self.is_postgresql else self.core_transaction()
            async with opened as core:
                yield CoreDriver(core)
            return
        async with checked_out(self.engine) as connection:
            yield connection
            if isinstance(connection.connection, sqlite_inline.InlineConnection):
                await connection.connection.commit()

    @property
    def is_postgresql(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (and for callers that manage commits themselves)."""
        async with self.sessions() as session:
            session.info.update(self.session_info)
            yield session

    async def checkpoint(self) -> bool:
        """SQLite: copy the write-ahead log into the database file and truncate it.

        Until then a deleted row's old page stays readable in `<db>-wal` (secure_delete
        only zeroes the new page). Waits up to busy_timeout (inline driver:
        `checkpoint_wait_seconds`) for readers to finish; returns False if the log could
        not be emptied. Nothing to do on PostgreSQL."""
        if not is_sqlite(self.url):
            return True
        deadline = time.monotonic() + self.checkpoint_wait_seconds
        while True:
            async with self.engine.connect() as connection:
                result = await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                busy = result.one()[0]  # (busy, log frames, checkpointed frames)
            if not busy or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if busy:
            log.warning("SQLite checkpoint incomplete: a reader still holds the WAL")
        return not busy

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(
    raw_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    pre_ping: bool = True,
    inline_sqlite: bool = False,
    sqlite_lock_timeout: float = sqlite_inline.LOCK_TIMEOUT_SECONDS,
    by_driver: bool = True,
    deadline_seconds: float | None = None,
) -> Database:
    """Up to `pool_size` kept connections plus `max_overflow` (default: as many again) that
    are closed when returned. `pre_ping=False` skips a round trip per checkout (the
    gateway: a stale connection fails one statement, which settlement retries on a fresh
    one).

    `inline_sqlite` (the gateway): a SQLite file is opened with `portal.db.sqlite_inline`,
    which runs each statement on the event loop thread instead of aiosqlite's worker
    thread and waits for other processes' locks with `asyncio.sleep`, up to
    `sqlite_lock_timeout`. Elsewhere (the portal, the CLI, migrations) SQLite stays on
    aiosqlite.

    `deadline_seconds` (the gateway, PostgreSQL): opening a connection (asyncpg's
    `timeout`) and waiting for one of the pool's (`pool_timeout`) each give up after it,
    so a server that accepts and never answers fails a call instead of holding it; the
    gateway also runs each per-call operation under that deadline
    (`gateway_plugins.breaker.Guard`), which covers the statements themselves on both the
    driver and the Core path."""
    url = to_async_url(raw_url)
    inline_path = _file_path(url) if inline_sqlite and is_sqlite(url) else None
    if inline_path is not None:
        engine = create_async_engine(
            url,
            async_creator=sqlite_inline.connect(
                inline_path,
                [*_PRAGMAS, "PRAGMA busy_timeout=0"],
                sqlite_inline.WriteGate(),
                lock_timeout=sqlite_lock_timeout,
            ),
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            pool_pre_ping=pre_ping,
        )
    elif is_sqlite(url):
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            pool_pre_ping=pre_ping,
            **(
                {}
                if deadline_seconds is None
                else {
                    "connect_args": {"timeout": deadline_seconds},
                    "pool_timeout": deadline_seconds,
                }
            ),
        )
    database = Database(url, engine, async_sessionmaker(engine, expire_on_commit=False))
    database.by_driver = by_driver
    if inline_path is not None:
        database.checkpoint_wait_seconds = sqlite_lock_timeout
        database.inline_sqlite = True
    return database


def _file_path(url: URL) -> str | None:
    """The file of a plain `sqlite:///path` URL; None for memory databases and URLs with
    query options, which the inline driver does not interpret."""
    if not url.database or url.database == ":memory:" or url.query:
        return None
    return url.database


# WAL lets the portal read while the gateway writes. secure_delete zeroes deleted content
# instead of leaving it in free pages (Debian builds it in; others do not).
_PRAGMAS = (
    "PRAGMA secure_delete=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # aiosqlite: busy_timeout queues writers instead of failing with "database is locked"
    # (the inline driver waits in asyncio instead, with busy_timeout 0).
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    for pragma in _PRAGMAS:
        cursor.execute(pragma)
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()

"""SQLite without a thread: an aiosqlite-shaped connection whose coroutines call `sqlite3`
directly on the event loop thread and return without suspending.

Why: aiosqlite runs every DBAPI call (cursor, execute, fetchall, close, commit) on its own
worker thread, a queue put plus a `call_soon_threadsafe` back per call, about four hops
per statement. The gateway's statements are small indexed reads and one-row writes that
take tens of microseconds in SQLite itself, so the hops cost more than the work. Only the
gateway uses this driver (`open_database(..., inline_sqlite=True)`); the portal keeps
aiosqlite.

SQLAlchemy wraps what `connect()` returns in its aiosqlite adapter
(`create_async_engine(async_creator=...)`), so `InlineConnection` and `InlineCursor`
mirror the parts of aiosqlite's API that adapter uses.

Locks: the event loop must never block on a lock held by another process (the portal
writes to the same file). The sqlite3 connection therefore has busy_timeout 0, and the
waiting happens here, with `await asyncio.sleep`:

- Transactions. sqlite3 runs with `isolation_level=None` and this module issues
  BEGIN/COMMIT/ROLLBACK itself, keeping the semantics of pysqlite's legacy implicit
  BEGIN that SQLAlchemy + aiosqlite give today: SQLAlchemy's `begin()` emits nothing,
  SELECTs before a transaction's first INSERT/UPDATE/DELETE/REPLACE run in autocommit,
  and that first write opens the transaction. Where pysqlite emits a deferred BEGIN,
  this module emits BEGIN IMMEDIATE, which takes the write lock up front: in WAL mode a
  deferred transaction that has read and then writes can fail with SQLITE_BUSY_SNAPSHOT,
  which no retry of the statement can cure, while a BEGIN IMMEDIATE that fails with
  SQLITE_BUSY has done nothing and is simply retried. (A SAVEPOINT outside a transaction
  also opens one with BEGIN IMMEDIATE first, for the same reason.) Once it succeeds, no
  statement of the transaction can meet SQLITE_BUSY in WAL mode.
- Retries. BEGIN IMMEDIATE, COMMIT (which in WAL mode does not wait for anything, but
  can in other journal modes, and leaves the transaction open when it fails so) and any
  statement run outside a transaction (a read, or a statement that had no effect
  because it failed) are retried on SQLITE_BUSY with a backoff from 1 ms to 25 ms, up to
  `lock_timeout` (30 s, what busy_timeout gave before) overall; then
  `sqlite3.OperationalError("database is locked: ...")` says which limit ran out.
- Inside the process. Connections of one engine share a `WriteGate` (an asyncio.Lock)
  taken before BEGIN IMMEDIATE and released at COMMIT/ROLLBACK: two coroutines never
  interleave write transactions, and a second writer queues on the lock instead of
  polling SQLite while the first one is suspended mid-transaction. Waiting for the gate
  counts towards the same `lock_timeout`. Reads take no gate, so a writer waiting for the
  portal's lock does not hold up the readiness probe or token checks on other
  connections of the pool.

Everything else is as before: the same PRAGMAs on every connection (secure_delete, WAL,
foreign_keys, synchronous=NORMAL; a commit is in the WAL file when COMMIT returns, so it
survives SIGKILL of the process), one connection per pool slot. A statement itself still
runs on the loop thread; that is the point, and fine for the gateway's small statements,
not for large scans (the portal's exports and sweeps stay on aiosqlite).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

__all__ = ["InlineConnection", "InlineCursor", "WriteGate", "connect"]

_T = TypeVar("_T")

LOCK_TIMEOUT_SECONDS = 30.0
_FIRST_PAUSE = 0.001
_MAX_PAUSE = 0.025

# The first keyword after whitespace and comments, as pysqlite's legacy mode reads it.
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*(\w+)", re.DOTALL)
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})


def _first_word(sql: str) -> str:
    match = _FIRST_WORD.match(sql)
    return match.group(1).upper() if match else ""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_BUSY)
    return "database is locked" in str(exc)


class WriteGate:
    """One writer at a time among the connections of one engine (module docstring)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter calls on an aiosqlite connection."""

    def __init__(self, connection: sqlite3.Connection, gate: WriteGate, lock_timeout: float):
        self._connection: sqlite3.Connection | None = connection
        self._gate = gate
        self._holds_gate = False
        self.lock_timeout = lock_timeout
        # "" = transactions managed here (module docstring); None = autocommit, which
        # SQLAlchemy's AUTOCOMMIT isolation level sets through `_tx` below.
        self.isolation_level: str | None = ""
        self._tx = _InlineQueue()

    # SQLAlchemy's isolation_level setter queues a function on aiosqlite's worker
    # (`_tx.put_nowait((future, fn))`) that sets `_conn.isolation_level`.
    @property
    def _conn(self) -> InlineConnection:
        return self

    @property
    def in_transaction(self) -> bool:
        return self._sqlite().in_transaction

    def _sqlite(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    def cursor(self) -> InlineCursor:
        return InlineCursor(self, self._sqlite().cursor())

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """One statement and its rows, as asyncpg's `fetch` (`portal.db.driver`)."""
        cursor = self.cursor()
        try:
            await cursor.execute(sql, args)
            return cursor._cursor.fetchall()
        finally:
            cursor._cursor.close()

    def is_closed(self) -> bool:
        return self._connection is None

    async def commit(self) -> None:
        connection = self._sqlite()
        try:
            if connection.in_transaction:
                await self._retry_busy(connection.commit, time.monotonic() + self.lock_timeout)
        finally:
            self._release_if_done()

    async def rollback(self) -> None:
        connection = self._sqlite()
        try:
            if connection.in_transaction:
                connection.rollback()
        finally:
            self._release_if_done()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close now (SQLAlchemy's terminate; also what `close()` does). An open
        transaction is rolled back by SQLite."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        self._release_if_done()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._sqlite().create_function(*args, **kwargs)

    async def _before(self, sql: str) -> bool:
        """Open the write transaction if `sql` starts one; whether `sql` runs outside a
        transaction (and so may be retried on SQLITE_BUSY)."""
        connection = self._sqlite()
        if connection.in_transaction:
            return False
        if self.isolation_level is None:
            return True
        word = _first_word(sql)
        if word in _WRITES or word == "SAVEPOINT":
            await self._begin_immediate()
            return False
        return True

    async def _begin_immediate(self) -> None:
        deadline = time.monotonic() + self.lock_timeout
        lock = self._gate.lock
        if not self._holds_gate:
            if lock.locked():
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await lock.acquire()
                except TimeoutError:
                    raise sqlite3.OperationalError(
                        "database is locked: another transaction of this process held the "
                        f"write lock for more than {self.lock_timeout:g} s"
                    ) from None
            else:
                await lock.acquire()  # free: returns without suspending
            self._holds_gate = True
        try:
            connection = self._sqlite()
            await self._retry_busy(lambda: connection.execute("BEGIN IMMEDIATE"), deadline)
        except BaseException:
            self._release_if_done()
            raise

    def _release_if_done(self) -> None:
        if not self._holds_gate:
            return
        if self._connection is not None and self._connection.in_transaction:
            return
        self._holds_gate = False
        self._gate.lock.release()

    async def _retry_busy(self, attempt: Callable[[], _T], deadline: float) -> _T:
        pause = _FIRST_PAUSE
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise sqlite3.OperationalError(
                        "database is locked: another connection held the lock for more "
                        f"than {self.lock_timeout:g} s"
                    ) from exc
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _MAX_PAUSE)


class InlineCursor:
    """What SQLAlchemy's aiosqlite adapter calls on an aiosqlite cursor."""

    def __init__(self, connection: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await self._run(sql, lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        rows = list(parameters)  # an iterator could not be retried
        await self._run(sql, lambda: self._cursor.executemany(sql, rows))
        return self

    async def _run(self, sql: str, attempt: Callable[[], object]) -> None:
        connection = self._connection
        try:
            if await connection._before(sql):
                await connection._retry_busy(attempt, time.monotonic() + connection.lock_timeout)
            else:
                attempt()
        finally:
            connection._release_if_done()  # a failed statement can end the transaction

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        if size is None:
            return self._cursor.fetchmany()
        return self._cursor.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def setinputsizes(self, *sizes: Any) -> None:
        pass

    async def close(self) -> None:
        self._cursor.close()


class _InlineQueue:
    """Runs what SQLAlchemy hands aiosqlite's worker queue, here and now."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


def connect(
    path: str,
    pragmas: Sequence[str],
    gate: WriteGate,
    *,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> Callable[[], Awaitable[InlineConnection]]:
    """An `async_creator` for `create_async_engine`: opens `path` with busy_timeout 0 and
    runs `pragmas` (retried while another process holds a lock they need)."""

    async def creator() -> InlineConnection:
        raw = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        connection = InlineConnection(raw, gate, lock_timeout)
        try:
            deadline = time.monotonic() + lock_timeout
            for pragma in pragmas:
                await connection._retry_busy(partial(_run_pragma, raw, pragma), deadline)
        except BaseException:
            raw.close()
            raise
        return connection

    return creator


def _run_pragma(connection: sqlite3.Connection, pragma: str) -> list[Any]:
    return connection.execute(pragma).fetchall()

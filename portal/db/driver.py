"""Core statements sent by the database driver itself, for the gateway's per-call money
statements: asyncpg on PostgreSQL, the inline SQLite driver (`portal.db.sqlite_inline`),
on a connection borrowed from SQLAlchemy's pool for the call (`checked_out`).

Why: each gateway call checks its token (without Redis), holds credits and settles them.
Sent this way instead of through SQLAlchemy's execution layer (`CoreDriver`, beside it:
the same statements), a call cost 16–18% less CPU in the gateway (plain calls; A/B of
2026-12-07, `bench/RESULTS.md`; `gateway_plugins.fast_paths` switches it off). The
statements stay SQLAlchemy Core, built by the modules that own their tables; they are
compiled once per dialect here and only their execution skips SQLAlchemy. Everything
else, the portal included, keeps SQLAlchemy.

What SQLAlchemy would do at execution and this does not, so not every statement
qualifies (`DriverStatement` refuses one that needs it when it is compiled):

- Python-side column defaults: a statement must set each column itself (`updated_at`
  included), or the database's default applies.
- Result processing of RETURNING: those rows come back as the driver decodes them. Use
  it for ids, counts and amounts, not for values whose type converts them (UTC
  datetimes, enums).

Bind processing is done (the column types' own: `UTCDateTime`, enums, SQLite's dates),
and so is result processing of a SELECT's columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import ClauseElement, Executable
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as aiosqlite_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

__all__ = ["CoreDriver", "Driver", "DriverConnection", "DriverStatement", "checked_out"]


class DriverConnection(Protocol):
    """What is used of the driver's connection: asyncpg's, or `InlineConnection`."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    def is_closed(self) -> bool: ...


_DIALECTS: dict[str, Dialect] = {
    "postgresql": asyncpg_dialect(),  # type: ignore[no-untyped-call]
    "sqlite": aiosqlite_dialect(),
}
_Processor = Callable[[Any], Any]


class _Compiled:
    """A statement's SQL for one dialect, and how to turn named values into its arguments."""

    __slots__ = ("_slots", "results", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        defaulted = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if defaulted:
            names = ", ".join(sorted(column.name for column in defaulted))
            raise ValueError(f"set these columns in the statement, not by default: {names}")
        self.sql = str(compiled)
        # Per positional parameter: its bind name, or the value fixed when the statement
        # was built (`literal(…)`), and the bind processor of its type.
        binds = ((name, compiled.binds[name]) for name in compiled.positiontup or ())
        self._slots: tuple[tuple[str | None, Any, _Processor | None], ...] = tuple(
            (
                name if bind.required else None,
                None if bind.required else bind.effective_value,
                bind.type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name, bind in binds
        )
        # A SELECT's column types convert what the driver returns (SQLite's date strings).
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in getattr(statement, "selected_columns", ())
        ]
        self.results: tuple[_Processor | None, ...] | None = (
            tuple(processors) if any(processors) else None
        )

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `parameters` (by bind name), processed."""
        values = []
        for name, constant, process in self._slots:
            value = constant if name is None else parameters[name]
            values.append(value if process is None or value is None else process(value))
        return values


class DriverStatement:
    """A Core statement, compiled once for each dialect it names."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: ClauseElement, *dialects: str) -> None:
        assert isinstance(statement, Executable)
        self.statement: Executable = statement
        self._compiled = {name: _Compiled(statement, _DIALECTS[name]) for name in dialects}

    def sql(self, dialect: str) -> str:
        return self._compiled[dialect].sql


class Driver:
    """A pooled connection, used through its driver (`Database.per_call`)."""

    __slots__ = ("connection", "dialect")

    def __init__(self, connection: DriverConnection, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect

    async def fetch(self, statement: DriverStatement, parameters: Mapping[str, Any]) -> list[Any]:
        """Run `statement` with `parameters`: its rows (indexable tuples)."""
        compiled = statement._compiled[self.dialect]
        rows = await self.connection.fetch(compiled.sql, *compiled.arguments(parameters))
        if compiled.results is None:
            return rows
        return [_processed(row, compiled.results) for row in rows]


class CoreDriver:
    """The same statements through SQLAlchemy Core, in a session's transaction or on a
    pooled connection: the library path beside `Driver` (`gateway_plugins.fast_paths`
    turns the gateway's use of `Driver` off for an A/B), and the portal's."""

    __slots__ = ("dialect", "executor")

    def __init__(self, executor: AsyncSession | AsyncConnection) -> None:
        self.executor = executor
        bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
        self.dialect = bind.dialect.name

    async def fetch(self, statement: DriverStatement, parameters: Mapping[str, Any]) -> list[Any]:
        """Run `statement` with `parameters`: its rows, if it returns any."""
        result = await self.executor.execute(statement.statement, parameters)
        return list(result.all()) if getattr(result, "returns_rows", True) else []


def _processed(row: Sequence[Any], processors: Sequence[_Processor | None]) -> tuple[Any, ...]:
    return tuple(
        value if process is None or value is None else process(value)
        for value, process in zip(row, processors, strict=True)
    )


def _server_gone(connection: Any, error: BaseException) -> bool:
    """The server ended the connection (a restart, a failover): asyncpg saw the socket
    close, or the server's FATAL error arrived first and left the connection waiting for
    the end of it, so the next statement finds it mid-protocol (`InternalClientError`,
    "another operation is in progress")."""
    return bool(connection.is_closed()) or isinstance(error, asyncpg.InternalClientError)


@asynccontextmanager
async def checked_out(engine: AsyncEngine) -> AsyncIterator[Driver]:
    """A connection of `engine`'s pool, used through its driver, then given back.

    The statements bypass SQLAlchemy's execution layer, so its handling of their errors
    is done here. After anything but an error the server reported (a constraint, say) the
    connection is discarded: a cancelled or broken statement may have left it
    mid-protocol. One that reported an error goes back to the pool, which rolls back
    whatever transaction is still open. One the server closed (a restart, a failover)
    means every connection of the pool went with it: the pool is told, as SQLAlchemy
    tells it of a disconnect (`Pool._invalidate`), so the next statement gets a fresh
    connection instead of failing on each stale one in turn."""
    pooled = await engine.raw_connection()
    connection: DriverConnection | None = pooled.driver_connection
    assert connection is not None
    try:
        yield Driver(connection, engine.dialect.name)
    except BaseException as exc:
        if _server_gone(connection, exc):
            engine.sync_engine.pool._invalidate(pooled, exc, _checkin=False)
            await greenlet_spawn(pooled.invalidate)
        elif isinstance(exc, asyncpg.PostgresError | sqlite3.DatabaseError):
            await greenlet_spawn(pooled.close)
        else:
            await greenlet_spawn(pooled.invalidate)
        raise
    if connection.is_closed():
        engine.sync_engine.pool._invalidate(pooled, None, _checkin=False)
        await greenlet_spawn(pooled.invalidate)
    else:
        await greenlet_spawn(pooled.close)

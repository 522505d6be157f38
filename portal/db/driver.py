"""Core statements run on PostgreSQL's driver (asyncpg) itself, for the gateway's per-call
money statements.

Why: each gateway call runs a hold and a settlement statement. Through SQLAlchemy's
execution layer (Connection, execution context, Result) one of them cost 0.47 ms of CPU
on this machine; the same SQL sent by asyncpg on a connection of the same pool, 0.17 ms
(checkout included, `bench/RESULTS.md`). The statements stay SQLAlchemy Core, built by
the modules that own their tables; they are compiled once for asyncpg here and only their
execution skips SQLAlchemy. Everything else, the portal included, keeps SQLAlchemy.

What SQLAlchemy would do at execution and this does not, so not every statement
qualifies (`DriverStatement` refuses one that needs it when it is built):

- Python-side column defaults: a statement must set each column itself (`updated_at`
  included), or the database's default applies.
- Result processing: rows come back as asyncpg decodes them. Use it for ids, counts and
  amounts, not for values whose type converts them (UTC datetimes, enums).

Bind processing is done (the column types' own, `UTCDateTime` and enums included).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["DriverConnection", "DriverStatement", "driver_connection"]


class DriverConnection(Protocol):
    """What is used of asyncpg's connection (a pooled one, in autocommit: each statement
    is its own transaction)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    def is_closed(self) -> bool: ...


_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
_Processor = Callable[[Any], Any]


class DriverStatement:
    """A Core statement compiled once for asyncpg, with its parameters in driver order."""

    __slots__ = ("_slots", "sql")

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        defaulted = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if defaulted:
            names = ", ".join(sorted(column.name for column in defaulted))
            raise ValueError(f"set these columns in the statement, not by default: {names}")
        self.sql = str(compiled)
        # Per positional parameter: its bind name, or the value fixed when the statement
        # was built (`literal(…)`), and the bind processor of its type.
        self._slots: tuple[tuple[str | None, Any, _Processor | None], ...] = tuple(
            (
                name if bind.required else None,
                None if bind.required else bind.effective_value,
                bind.type.bind_processor(_DIALECT),
            )
            for name, bind in ((name, compiled.binds[name]) for name in compiled.positiontup or ())
        )

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `parameters` (by bind name), processed."""
        values = []
        for name, constant, process in self._slots:
            value = constant if name is None else parameters[name]
            values.append(value if process is None or value is None else process(value))
        return values

    async def fetch(
        self, connection: DriverConnection, parameters: Mapping[str, Any]
    ) -> Sequence[Any]:
        """The rows (asyncpg records: indexable tuples)."""
        return await connection.fetch(self.sql, *self.arguments(parameters))


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[DriverConnection]:
    """A connection of `engine`'s pool as asyncpg's own, returned to the pool afterwards.

    It is in autocommit (no transaction is opened through SQLAlchemy, so returning it
    rolls nothing back). After anything but an error the server reported (a constraint,
    say), it is discarded rather than returned: a cancelled or broken statement may leave
    the connection mid-protocol."""
    pooled = await engine.raw_connection()
    connection: DriverConnection | None = pooled.driver_connection
    assert connection is not None
    try:
        yield connection
    except asyncpg.PostgresError:
        pooled.close()
        raise
    except BaseException:
        pooled.invalidate()
        raise
    else:
        if connection.is_closed():
            pooled.invalidate()
        else:
            pooled.close()

"""INSERT … ON CONFLICT DO NOTHING for both backends (SQLAlchemy spells it per dialect)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

__all__ = ["WITHOUT_SESSION_SYNC", "insert_ignore", "insert_ignore_returning_id"]

# For UPDATE/DELETE statements on rows the session has not loaded (balances, holds):
# skips the ORM's evaluation of the WHERE clause against the identity map, which was a
# measurable share of the gateway's per-request CPU.
WITHOUT_SESSION_SYNC = {"synchronize_session": False}


async def insert_ignore(session: AsyncSession, model: type[DeclarativeBase], **values: Any) -> bool:
    """Insert a row unless it conflicts with a unique key; True when a row was inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values).on_conflict_do_nothing()
    result = await session.execute(statement)
    return bool(result.rowcount)


async def insert_ignore_returning_id(
    session: AsyncSession, model: type[DeclarativeBase], /, **values: Any
) -> int | None:
    """As `insert_ignore`, returning the new row's `id` (None when it conflicted): one
    statement where the ORM would need an insert, a flush and a refresh."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = model.__table__
    statement = insert(model).values(**values).on_conflict_do_nothing().returning(table.c.id)
    new_id: int | None = (await session.execute(statement)).scalar_one_or_none()
    return new_id

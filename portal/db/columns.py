"""Column helpers shared by the models."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Integer, String, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import UTCDateTime, utcnow

__all__ = [
    "BigId",
    "EnumString",
    "created_at_column",
    "credit_units_column",
    "new_id",
    "unit_base_name",
]

E = TypeVar("E", bound=StrEnum)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def new_id() -> str:
    return str(uuid.uuid4())


def created_at_column() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class EnumString(TypeDecorator[E]):
    """A `StrEnum` stored as its value in a plain VARCHAR (no database enum type: a new
    member needs no migration) and read back as the member. Writing a string that is not
    a member's value raises ValueError."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


def credit_units_column(base_name: str) -> dict[str, str]:
    """`info=` for a column holding ledger units (`portal.credits.units`). Where a person
    reads it, the amount is shown as `<base_name>_units` (the integer) and
    `<base_name>_credits` (the decimal), never as a bare number that could be taken for
    credits. Here, below every domain, so any domain's table can mark such a column."""
    return {"credit_units": base_name}


def unit_base_name(info: Mapping[str, Any]) -> str | None:
    """The base name of a ledger-units column from its `info`, or None for other columns."""
    base = info.get("credit_units")
    return base if isinstance(base, str) else None

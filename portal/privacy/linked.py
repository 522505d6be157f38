"""Which tables and columns hold data about a person, read from the schema itself, so a
table added later (billing, …) is exported and handled at deletion without a code change.

A table is *linked* when it has a foreign key to `users.id`. Columns named `*_hash` are
one-way digests of secrets (password, token, session, link): never exported, only named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table

from portal.models import Base

__all__ = ["LinkedTable", "is_withheld", "linked_tables"]


@dataclass(frozen=True)
class LinkedTable:
    table: Table
    user_column: Column[Any]  # the column that points at users.id
    on_delete: str  # "CASCADE" (goes with the account) or "SET NULL" (kept, anonymised)


def linked_tables() -> list[LinkedTable]:
    found = []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name == "users" and fk.column.name == "id":
                found.append(LinkedTable(table, fk.parent, (fk.ondelete or "NO ACTION").upper()))
    return found


def is_withheld(column: Column[Any]) -> bool:
    return column.name.endswith("_hash")

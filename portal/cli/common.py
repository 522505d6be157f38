"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from portal.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["CommandError", "print_json", "transaction"]


class CommandError(Exception):
    """A reason to stop, phrased for the operator."""


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncSession]:
    from portal.db import open_database  # SQLAlchemy only for commands that need it

    database = open_database(get_settings().database_url, pool_size=1)
    try:
        async with database.transaction() as session:
            yield session
    finally:
        await database.dispose()


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")

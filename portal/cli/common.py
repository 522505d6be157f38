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
    from portal.accounts.gateway_cache import use_redis  # SQLAlchemy and Redis only for
    from portal.db import open_database  # the commands that need them

    settings = get_settings()
    database = open_database(settings.database_url, pool_size=1)
    use_redis(database, settings.redis_url)  # revocations and suspensions reach gateways
    try:
        async with database.transaction() as session:
            yield session
    finally:
        await database.dispose()


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")

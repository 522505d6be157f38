"""Apply Alembic migrations programmatically (`gateway-admin db upgrade`, tests, `make run`)."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config

from portal.settings import PROJECT_ROOT

__all__ = ["alembic_config", "upgrade", "upgrade_async"]


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "portal" / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """For callers already inside an event loop (env.py runs its own loop)."""
    await asyncio.to_thread(upgrade, database_url, revision)

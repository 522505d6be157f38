"""Apply Alembic migrations programmatically (`gateway-admin db upgrade`, tests, `make run`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.config import Config

from portal.settings import PROJECT_ROOT

__all__ = ["AppliedMigration", "alembic_config", "upgrade", "upgrade_async"]


@dataclass(frozen=True)
class AppliedMigration:
    revision: str
    title: str
    """The migration's docstring summary, on one line."""


_TITLE_MAX = 90


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "portal" / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> list[AppliedMigration]:
    """Migrate to `revision`; returns the migrations applied, oldest first (none when the
    database was already there)."""
    applied: list[AppliedMigration] = []

    def collect(*, step: Any, **_: Any) -> None:
        if step.is_upgrade and step.up_revision is not None:
            title = " ".join((step.up_revision.doc or "").split())
            if len(title) > _TITLE_MAX:
                title = title[: _TITLE_MAX - 1].rstrip() + "…"
            applied.append(AppliedMigration(step.up_revision.revision, title))

    config = alembic_config(database_url)
    config.attributes["on_version_apply"] = [collect]
    command.upgrade(config, revision)
    return applied


async def upgrade_async(database_url: str, revision: str = "head") -> list[AppliedMigration]:
    """For callers already inside an event loop (env.py runs its own loop)."""
    return await asyncio.to_thread(upgrade, database_url, revision)

"""Apply the retention rules (or, in a dry run, count what they would touch).

Each rule runs in batches of `batch_size` rows, one transaction per batch, so a large
backlog never holds long locks on tables the gateway writes to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from portal.config.plugin_settings import RetentionSettings
from portal.db import Database
from portal.db.base import utcnow
from portal.retention.rules import build_rules

__all__ = ["RuleOutcome", "run_retention"]

BATCH_SIZE = 1000


@dataclass(frozen=True)
class RuleOutcome:
    name: str
    description: str
    verb: str
    rows: int  # changed, or in a dry run: would change


async def run_retention(
    database: Database,
    settings: RetentionSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
) -> list[RuleOutcome]:
    outcomes = []
    for rule in build_rules(settings, now or utcnow()):
        if dry_run:
            async with database.session() as session:
                rows = await rule.count(session)
        else:
            rows = 0
            while True:
                async with database.transaction() as session:
                    changed = await rule.apply(session, batch_size)
                rows += changed
                if rule.one_pass or changed < batch_size:
                    break
        outcomes.append(RuleOutcome(rule.name, rule.description, rule.verb, rows))
    return outcomes

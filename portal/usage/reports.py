"""Usage summaries for the portal: counts for paging, daily totals for the chart, and
the latest record for the "what we keep" panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.usage.models import UsageRecord

__all__ = ["DailyUsage", "count_usage", "daily_usage", "latest_record"]


@dataclass(frozen=True)
class DailyUsage:
    day: date
    requests: int
    tokens: int
    credits: int  # ledger units


async def count_usage(
    session: AsyncSession,
    user_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    statement = select(func.count()).where(UsageRecord.user_id == user_id)
    if since is not None:
        statement = statement.where(UsageRecord.started_at >= since)
    if until is not None:
        statement = statement.where(UsageRecord.started_at < until)
    return int(await session.scalar(statement) or 0)


async def daily_usage(
    session: AsyncSession, user_id: str, *, days: int = 30, today: date | None = None
) -> list[DailyUsage]:
    """One entry per UTC day for the last `days` days (oldest first), zeros included."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    day: ColumnElement[Any]  # a date on PostgreSQL, 'YYYY-MM-DD' text on SQLite
    if session.get_bind().dialect.name == "postgresql":
        day = cast(func.timezone("UTC", UsageRecord.started_at), Date)
    else:  # SQLite keeps UTC text; date() takes its first ten characters
        day = func.date(UsageRecord.started_at)
    rows = await session.execute(
        select(
            day.label("day"),
            func.count(),
            func.coalesce(func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), 0),
            func.coalesce(func.sum(UsageRecord.credits), 0),
        )
        .where(UsageRecord.user_id == user_id, UsageRecord.started_at >= since)
        .group_by(day)
    )
    totals = {str(row[0])[:10]: row for row in rows}
    result = []
    for offset in range(days):
        current = first + timedelta(days=offset)
        row = totals.get(current.isoformat())
        result.append(
            DailyUsage(current, *(int(v) for v in row[1:])) if row else DailyUsage(current, 0, 0, 0)
        )
    return result


async def latest_record(session: AsyncSession, user_id: str) -> UsageRecord | None:
    return await session.scalar(
        select(UsageRecord)
        .where(UsageRecord.user_id == user_id)
        .order_by(UsageRecord.started_at.desc(), UsageRecord.id.desc())
        .limit(1)
    )

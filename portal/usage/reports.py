"""Usage summaries for the portal: counts for paging, totals by model or token for a
range, daily totals for the chart, and the latest record for the "what we keep" panel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.credits.statement import utc_day
from portal.usage.models import UsageRecord

__all__ = ["DailyUsage", "UsageTotal", "count_usage", "daily_usage", "latest_record", "totals_by"]


@dataclass(frozen=True)
class DailyUsage:
    day: date
    requests: int
    tokens: int
    credits: int  # ledger units


@dataclass(frozen=True)
class UsageTotal:
    key: str | None  # the model, or the token id (None: a token since deleted)
    requests: int
    prompt_tokens: int
    completion_tokens: int
    credits: int  # ledger units


def _in_range(statement: Any, user_id: str, since: datetime | None, until: datetime | None) -> Any:
    """`statement` (a SELECT) limited to `user_id`'s calls started in [since, until)."""
    statement = statement.where(UsageRecord.user_id == user_id)
    if since is not None:
        statement = statement.where(UsageRecord.started_at >= since)
    if until is not None:
        statement = statement.where(UsageRecord.started_at < until)
    return statement


async def count_usage(
    session: AsyncSession,
    user_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    return int(await session.scalar(_in_range(select(func.count()), user_id, since, until)) or 0)


async def totals_by(
    session: AsyncSession,
    user_id: str,
    by: Literal["model", "token"],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[UsageTotal]:
    """Requests, tokens and credits per model (or per token) in the range, dearest first."""
    key = UsageRecord.model if by == "model" else UsageRecord.token_id
    charged = func.coalesce(func.sum(UsageRecord.credits), 0)
    statement = select(
        key,
        func.count(),
        func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
        func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
        charged,
    )
    rows = await session.execute(
        _in_range(statement, user_id, since, until).group_by(key).order_by(charged.desc(), key)
    )
    return [UsageTotal(row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4])) for row in rows]


async def daily_usage(
    session: AsyncSession, user_id: str, *, days: int = 30, today: date | None = None
) -> list[DailyUsage]:
    """One entry per UTC day for the last `days` days (oldest first), zeros included."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    day: ColumnElement[Any] = utc_day(session, UsageRecord.started_at)
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

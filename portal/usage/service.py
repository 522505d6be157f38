"""Reading usage records for a user (CLI, portal, export) or a token (the gateway's
`GET /v1/calls/{call_id}`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.usage.models import UsageRecord

__all__ = ["call_of_token", "list_usage"]


async def list_usage(
    session: AsyncSession,
    user_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> list[UsageRecord]:
    """A user's calls in time order (oldest first, or newest first for tables)."""
    statement = select(UsageRecord).where(UsageRecord.user_id == user_id)
    if since is not None:
        statement = statement.where(UsageRecord.started_at >= since)
    if until is not None:
        statement = statement.where(UsageRecord.started_at < until)
    if newest_first:
        statement = statement.order_by(UsageRecord.started_at.desc(), UsageRecord.id.desc())
    else:
        statement = statement.order_by(UsageRecord.started_at, UsageRecord.id)
    statement = statement.offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    return list(await session.scalars(statement))


async def call_of_token(session: AsyncSession, call_id: str, token_id: str) -> UsageRecord | None:
    """The usage record of call `call_id` if the token `token_id` made it, else None (so
    another token's call and an unknown one look alike). One indexed read (`call_id` is
    unique)."""
    return await session.scalar(
        select(UsageRecord).where(UsageRecord.call_id == call_id, UsageRecord.token_id == token_id)
    )

"""Start, resolve and end browser sessions. Callers own the transaction.

The cookie carries 256 random bits; the table keeps only their SHA-256, so a database
leak does not hand out live sessions. A session lasts `SESSION_LIFETIME` from sign-in
and ends earlier after `IDLE_TIMEOUT` without a request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.base import utcnow
from portal.sessions.models import WebSession

__all__ = [
    "IDLE_TIMEOUT",
    "SESSION_LIFETIME",
    "end_all_sessions",
    "end_session",
    "hash_session_secret",
    "list_sessions",
    "new_session_secret",
    "resolve_session",
    "start_session",
]

SESSION_LIFETIME = timedelta(days=14)
IDLE_TIMEOUT = timedelta(days=3)
_SEEN_RESOLUTION = timedelta(minutes=5)  # keeps a write off most requests


def new_session_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_session_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def start_session(session: AsyncSession, user_id: str) -> str:
    """A new session for `user_id`; returns the cookie value (shown to the browser only)."""
    secret = new_session_secret()
    now = utcnow()
    session.add(
        WebSession(
            user_id=user_id,
            session_hash=hash_session_secret(secret),
            created_at=now,
            last_seen_at=now,
            expires_at=now + SESSION_LIFETIME,
        )
    )
    await session.flush()
    return secret


async def resolve_session(session: AsyncSession, secret: str) -> WebSession | None:
    """The live session for a cookie value, or None (expired ones are removed). Its user
    is `web_session.user_id` (sessions go with their account: ON DELETE CASCADE)."""
    if not secret or len(secret) > 100:
        return None
    web_session = await session.scalar(
        select(WebSession).where(WebSession.session_hash == hash_session_secret(secret))
    )
    if web_session is None:
        return None
    now = utcnow()
    if web_session.expires_at <= now or web_session.last_seen_at + IDLE_TIMEOUT <= now:
        await session.delete(web_session)
        await session.flush()
        return None
    if web_session.last_seen_at + _SEEN_RESOLUTION <= now:
        web_session.last_seen_at = now
        await session.flush()
    return web_session


async def end_session(session: AsyncSession, secret: str) -> None:
    await session.execute(
        delete(WebSession).where(WebSession.session_hash == hash_session_secret(secret))
    )


async def end_all_sessions(
    session: AsyncSession, user_id: str, *, except_id: str | None = None
) -> None:
    """Sign `user_id` out everywhere (optionally keeping the session `except_id`)."""
    statement = delete(WebSession).where(WebSession.user_id == user_id)
    if except_id is not None:
        statement = statement.where(WebSession.id != except_id)
    await session.execute(statement)


async def list_sessions(session: AsyncSession, user_id: str) -> list[WebSession]:
    result = await session.scalars(
        select(WebSession).where(WebSession.user_id == user_id).order_by(WebSession.created_at)
    )
    return list(result)

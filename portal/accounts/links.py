"""One-time links sent by email (verify an address, reset a password).

The link carries 256 random bits; the table keeps only their SHA-256. A link works once,
until it expires, and issuing a new one of the same purpose retires the older ones.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import AccountLink, LinkPurpose, User
from portal.db.base import utcnow

__all__ = ["LIFETIMES", "consume_link", "find_link", "issue_link"]

LIFETIMES = {
    LinkPurpose.VERIFY_EMAIL: timedelta(hours=48),
    LinkPurpose.RESET_PASSWORD: timedelta(hours=1),
}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def issue_link(
    session: AsyncSession, user: User, purpose: str, *, new_email: str | None = None
) -> str:
    """A fresh link secret for `user`; earlier unused links of this purpose stop working."""
    await session.execute(
        delete(AccountLink).where(AccountLink.user_id == user.id, AccountLink.purpose == purpose)
    )
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        AccountLink(
            user_id=user.id,
            purpose=purpose,
            token_hash=_hash(secret),
            new_email=new_email,
            created_at=now,
            expires_at=now + LIFETIMES[purpose],
        )
    )
    await session.flush()
    return secret


async def find_link(session: AsyncSession, secret: str, purpose: str) -> AccountLink | None:
    """The usable link for `secret` (unused, unexpired, right purpose) or None."""
    if not secret or len(secret) > 100:
        return None
    link = await session.scalar(select(AccountLink).where(AccountLink.token_hash == _hash(secret)))
    if link is None or link.purpose != purpose or link.used_at is not None:
        return None
    if link.expires_at <= utcnow():
        return None
    return link


async def consume_link(session: AsyncSession, secret: str, purpose: str) -> AccountLink | None:
    """Mark the link used and return it; None if it is unknown, used or expired."""
    link = await find_link(session, secret, purpose)
    if link is None:
        return None
    link.used_at = utcnow()
    await session.flush()
    return link

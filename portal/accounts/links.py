"""One-time links sent by email (verify an address, reset a password).

The link carries 256 random bits; the table keeps only their SHA-256. A link works once,
until it expires, and issuing a new one of the same purpose retires the older ones.
Using one is a single conditional UPDATE, so of several parallel uses exactly one wins.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import AccountLink, LinkPurpose, User
from portal.db.base import utcnow
from portal.db.upsert import WITHOUT_SESSION_SYNC

__all__ = ["LIFETIMES", "UsedLink", "consume_link", "find_link", "issue_link"]

LIFETIMES = {
    LinkPurpose.VERIFY_EMAIL: timedelta(hours=48),
    LinkPurpose.RESET_PASSWORD: timedelta(hours=1),
}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def issue_link(
    session: AsyncSession, user: User, purpose: LinkPurpose, *, new_email: str | None = None
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


async def find_link(session: AsyncSession, secret: str, purpose: LinkPurpose) -> AccountLink | None:
    """The usable link for `secret` (unused, unexpired, right purpose) or None."""
    if not secret or len(secret) > 100:
        return None
    link = await session.scalar(select(AccountLink).where(AccountLink.token_hash == _hash(secret)))
    if link is None or link.purpose != purpose or link.used_at is not None:
        return None
    if link.expires_at <= utcnow():
        return None
    return link


@dataclass(frozen=True)
class UsedLink:
    user_id: str
    new_email: str | None


async def consume_link(session: AsyncSession, secret: str, purpose: LinkPurpose) -> UsedLink | None:
    """Mark the link used and say whose it was; None if it is unknown, used or expired.

    One conditional UPDATE decides: a parallel use of the same link waits for this row
    (PostgreSQL row lock, SQLite's single writer) and then finds it used."""
    if not secret or len(secret) > 100:
        return None
    now = utcnow()
    used = (
        await session.execute(
            update(AccountLink)
            .where(
                AccountLink.token_hash == _hash(secret),
                AccountLink.purpose == purpose,
                AccountLink.used_at.is_(None),
                AccountLink.expires_at > now,
            )
            .values(used_at=now)
            .returning(AccountLink.user_id, AccountLink.new_email)
            .execution_options(**WITHOUT_SESSION_SYNC)
        )
    ).one_or_none()
    return UsedLink(used.user_id, used.new_email) if used is not None else None

"""Account records: create, look up, verify, suspend. Callers own the transaction."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import AccountStatus, User
from portal.accounts.passwords import hash_password
from portal.db.base import utcnow
from portal.errors import NotFound

__all__ = ["EmailTaken", "create_user", "get_by_email", "normalise_email", "require_by_email"]

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{2,63}$")


class EmailTaken(ValueError):
    pass


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValueError("not a valid email address")
    return email


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    try:
        email = normalise_email(email)
    except ValueError:
        return None
    return await session.scalar(select(User).where(User.email == email))


async def require_by_email(session: AsyncSession, email: str) -> User:
    user = await get_by_email(session, email)
    if user is None:
        raise NotFound("no account with that email")
    return user


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    password: str | None = None,
    verified: bool = False,
) -> User:
    email = normalise_email(email)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("name must be 1 to 200 characters")
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken("an account with that email already exists")
    user = User(
        email=email,
        name=name,
        password_hash=hash_password(password) if password is not None else None,
        email_verified_at=utcnow() if verified else None,
        status=AccountStatus.ACTIVE,
    )
    session.add(user)
    await session.flush()
    return user

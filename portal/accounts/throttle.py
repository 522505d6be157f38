"""Throttle failed sign-ins per account and per client address, in the database so every
worker and instance shares the count.

The account key is a hash of the normalised email whether or not an account has it, so
the throttle answers the same for unknown addresses (no account enumeration).
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import SignInFailure
from portal.db.base import utcnow

__all__ = [
    "ACCOUNT_LIMIT",
    "ADDRESS_LIMIT",
    "WINDOW",
    "account_key",
    "clear_account",
    "record_failure",
    "retry_after_seconds",
]

WINDOW = timedelta(minutes=15)
ACCOUNT_LIMIT = 5  # failures per account per window
ADDRESS_LIMIT = 30  # failures per client address per window (many people share NATs)


def account_key(email: str) -> str:
    return hashlib.sha256(f"account:{email.strip().lower()}".encode()).hexdigest()


def address_key(address: str) -> str:
    return hashlib.sha256(f"address:{address}".encode()).hexdigest()


async def retry_after_seconds(session: AsyncSession, *, email: str, address: str) -> int:
    """0 if a sign-in may be tried now, else seconds until the oldest counted failure ages out."""
    since = utcnow() - WINDOW
    wait = 0
    for key, limit in ((account_key(email), ACCOUNT_LIMIT), (address_key(address), ADDRESS_LIMIT)):
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(SignInFailure.failed_at)).where(
                    SignInFailure.key_hash == key, SignInFailure.failed_at > since
                )
            )
        ).one()
        if count >= limit and oldest is not None:
            if oldest.tzinfo is None:  # SQLite aggregate loses the column type
                oldest = oldest.replace(tzinfo=since.tzinfo)
            wait = max(wait, math.ceil((oldest + WINDOW - utcnow()).total_seconds()))
    return max(wait, 0)


async def record_failure(session: AsyncSession, *, email: str, address: str) -> None:
    now = utcnow()
    await session.execute(delete(SignInFailure).where(SignInFailure.failed_at < now - WINDOW))
    session.add_all(
        [
            SignInFailure(scope="account", key_hash=account_key(email), failed_at=now),
            SignInFailure(scope="address", key_hash=address_key(address), failed_at=now),
        ]
    )
    await session.flush()


async def clear_account(session: AsyncSession, email: str) -> None:
    """Forget an account's failures (after a successful sign-in, or account deletion)."""
    await session.execute(delete(SignInFailure).where(SignInFailure.key_hash == account_key(email)))

"""Connect codes: issued when a person approves an app, redeemed once by the app.

Callers own the transaction. A code is 256 random bits, handed to the app's callback and
never stored: the table keeps its SHA-256, the PKCE challenge and the callback it is
bound to. Redeeming is one conditional UPDATE (unused, unexpired, same challenge and
callback), so of any number of parallel exchanges of one code exactly one gets a row
back, whatever the backend (PostgreSQL re-checks the condition on the row it waited
for); the others are told why, read after the fact.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.connect.authorization import ConnectRequest, challenge_of
from portal.connect.models import ConnectCode
from portal.db.base import utcnow
from portal.db.upsert import WITHOUT_SESSION_SYNC
from portal.tokens.spending import SpendingLimit, parse_limit

__all__ = [
    "CODE_LIFETIME",
    "CodeRefused",
    "RedeemedCode",
    "connected_apps",
    "hash_code",
    "issue_code",
    "link_token",
    "redeem_code",
]

CODE_LIFETIME = timedelta(minutes=5)


class CodeRefused(ValueError):
    """The code cannot be exchanged; the message says why (OAuth `invalid_grant`)."""


@dataclass(frozen=True)
class RedeemedCode:
    id: str
    user_id: str
    app_name: str
    limit: SpendingLimit | None = None
    """The spending limit the person gave the app's token on the consent page."""


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


async def issue_code(
    session: AsyncSession,
    *,
    user_id: str,
    approved: ConnectRequest,
    limit: SpendingLimit | None = None,
) -> str:
    """A new one-time code for `approved`, valid for CODE_LIFETIME, whose token will have
    the spending `limit`; returned once."""
    code = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        ConnectCode(
            user_id=user_id,
            code_hash=hash_code(code),
            code_challenge=approved.code_challenge,
            callback_url=approved.callback_url,
            app_name=approved.app_name,
            created_at=now,
            expires_at=now + CODE_LIFETIME,
            limit_units=limit.units if limit else None,
            limit_reset=limit.reset.value if limit and limit.reset else None,
        )
    )
    await session.flush()
    return code


async def redeem_code(
    session: AsyncSession, *, code: str, verifier: str, callback_url: str
) -> RedeemedCode:
    """Use `code` up, or CodeRefused saying why. A refused attempt uses nothing up."""
    code_hash, challenge, now = hash_code(code), challenge_of(verifier), utcnow()
    codes = ConnectCode.__table__.c
    row = (
        await session.execute(
            update(ConnectCode)
            .where(
                codes.code_hash == code_hash,
                codes.used_at.is_(None),
                codes.expires_at > now,
                codes.code_challenge == challenge,
                codes.callback_url == callback_url,
            )
            .values(used_at=now)
            .returning(
                codes.id, codes.user_id, codes.app_name, codes.limit_units, codes.limit_reset
            )
            .execution_options(**WITHOUT_SESSION_SYNC)
        )
    ).one_or_none()
    if row is None:
        raise CodeRefused(await _why(session, code_hash, challenge, callback_url, now))
    return RedeemedCode(
        id=row.id,
        user_id=row.user_id,
        app_name=row.app_name,
        limit=parse_limit(row.limit_units, row.limit_reset),
    )


async def _why(
    session: AsyncSession, code_hash: str, challenge: str, callback_url: str, now: datetime
) -> str:
    codes = ConnectCode.__table__.c
    found = (
        await session.execute(
            select(codes.used_at, codes.expires_at, codes.callback_url, codes.code_challenge).where(
                codes.code_hash == code_hash
            )
        )
    ).one_or_none()
    if found is None:
        return "This code is not known here. Connect the app again."
    used_at, expires_at, bound_callback, bound_challenge = found
    if used_at is not None:
        return "This code has already been exchanged for a token; a code works once."
    if _aware(expires_at) <= now:
        minutes = int(CODE_LIFETIME.total_seconds() // 60)
        return (
            f"This code expired at {_aware(expires_at):%Y-%m-%d %H:%M:%S} UTC (codes last "
            f"{minutes} minutes). Connect the app again."
        )
    if bound_callback != callback_url:
        return "callback_url is not the one this code was issued for."
    if bound_challenge != challenge:
        return "code_verifier does not match the code_challenge this code was issued for."
    return "This code can no longer be exchanged. Connect the app again."  # changed meanwhile


async def link_token(session: AsyncSession, *, code_id: str, token_id: str) -> None:
    """Record the token a redeemed code became (the Tokens page names its app)."""
    await session.execute(
        update(ConnectCode)
        .where(ConnectCode.id == code_id)
        .values(token_id=token_id)
        .execution_options(**WITHOUT_SESSION_SYNC)
    )


async def connected_apps(session: AsyncSession, user_id: str) -> dict[str, str]:
    """token id -> the name of the app it was issued to, for `user_id`'s connected tokens."""
    rows = await session.execute(
        select(ConnectCode.token_id, ConnectCode.app_name).where(
            ConnectCode.user_id == user_id, ConnectCode.token_id.is_not(None)
        )
    )
    return {token_id: app_name for token_id, app_name in rows if token_id}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)

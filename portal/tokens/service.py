"""Create, list, revoke and authenticate gateway tokens, and set their spending limits.
Callers own the transaction; a revocation has the gateways' cached check of the token
dropped after it commits. A limit needs no cache invalidation: the gateway reads it in
its hold statement (`portal.tokens.spending`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.gateway_cache import drop_token_after_commit
from portal.accounts.models import AccountStatus, User
from portal.db.base import utcnow
from portal.db.driver import CoreDriver, Driver, DriverStatement
from portal.db.engine import Executor
from portal.db.upsert import WITHOUT_SESSION_SYNC
from portal.errors import (
    AccountSuspended,
    EmailNotVerified,
    InvalidToken,
    NotFound,
    TokenExpired,
    TokenRevoked,
)
from portal.tokens.models import GatewayToken
from portal.tokens.secrets import display_prefix, hash_token, looks_like_token, new_token
from portal.tokens.spending import SpendingLimit

__all__ = [
    "TokenIdentity",
    "authenticate",
    "authenticate_on_driver",
    "create_token",
    "find_token",
    "list_tokens",
    "revoke_token",
    "set_limit",
    "touch_last_used",
]

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenIdentity:
    """What a valid token resolves to; safe to cache (no secret in it)."""

    token_id: str
    user_id: str
    token_hash: str
    expires_at: datetime | None
    plan: str


async def create_token(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    expires_at: datetime | None = None,
    limit: SpendingLimit | None = None,
) -> tuple[str, GatewayToken]:
    """Mint a token (with a spending `limit`, if given). The plaintext is returned once
    and never stored."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValueError("token name must be 1 to 100 characters")
    plaintext = new_token()
    token = GatewayToken(
        user_id=user.id,
        name=name,
        prefix=display_prefix(plaintext),
        token_hash=hash_token(plaintext),
        expires_at=expires_at,
        limit_units=limit.units if limit else None,
        limit_reset=limit.reset.value if limit and limit.reset else None,
    )
    session.add(token)
    await session.flush()
    return plaintext, token


async def list_tokens(session: AsyncSession, user_id: str) -> list[GatewayToken]:
    result = await session.scalars(
        select(GatewayToken)
        .where(GatewayToken.user_id == user_id)
        .order_by(GatewayToken.created_at.desc())
    )
    return list(result)


async def find_token(session: AsyncSession, *, user_id: str, token_id: str) -> GatewayToken:
    """One of `user_id`'s tokens (another user's token is NotFound)."""
    token = await session.scalar(
        select(GatewayToken).where(GatewayToken.id == token_id, GatewayToken.user_id == user_id)
    )
    if token is None:
        raise NotFound("no such token")
    return token


async def revoke_token(session: AsyncSession, *, user_id: str, token_id: str) -> GatewayToken:
    """Revoke one of `user_id`'s tokens (another user's token is NotFound). Once the
    transaction commits, every gateway's cached check of it is dropped (again, for a token
    already revoked: an operator's retry after Redis was unreachable)."""
    token = await find_token(session, user_id=user_id, token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
    drop_token_after_commit(session, token.token_hash)
    return token


async def set_limit(
    session: AsyncSession, *, user_id: str, token_id: str, limit: SpendingLimit | None
) -> GatewayToken:
    """Set (or, None, remove) the spending limit of one of `user_id`'s tokens (another
    user's token is NotFound). The next hold checks it against what the token used in the
    new limit's period, calls in flight included."""
    token = await find_token(session, user_id=user_id, token_id=token_id)
    token.limit_units = limit.units if limit else None
    token.limit_reset = limit.reset.value if limit and limit.reset else None
    await session.flush()
    return token


# Built once, on the tables (not the ORM classes): it runs on every gateway call without
# Redis, and on every cache miss with it.
_tokens, _users = GatewayToken.__table__.c, User.__table__.c
_IDENTITY = (
    select(
        _tokens.id,
        _tokens.revoked_at,
        _tokens.expires_at,
        _users.id.label("user_id"),
        _users.plan,
        _users.status,
        _users.email_verified_at,
    )
    .join_from(GatewayToken.__table__, User.__table__, _users.id == _tokens.user_id)
    .where(_tokens.token_hash == bindparam("presented"))
)
_IDENTITY_BY_DRIVER = DriverStatement(_IDENTITY, "postgresql", "sqlite")


async def authenticate(session: Executor, plaintext: str) -> TokenIdentity:
    """Resolve a presented token to its owner or raise the reason it is refused."""
    token_hash = _presented_hash(plaintext)
    row = (await session.execute(_IDENTITY, {"presented": token_hash})).first()
    return _identity(token_hash, None if row is None else tuple(row))


async def authenticate_on_driver(driver: Driver | CoreDriver, plaintext: str) -> TokenIdentity:
    """`authenticate`, its one SELECT sent by the driver (the gateway's check per call
    without Redis: `portal.db.driver`)."""
    token_hash = _presented_hash(plaintext)
    rows = await driver.fetch(_IDENTITY_BY_DRIVER, {"presented": token_hash})
    return _identity(token_hash, rows[0] if rows else None)


def _presented_hash(plaintext: str) -> str:
    if not looks_like_token(plaintext):
        raise InvalidToken("Invalid gateway token. Create one in the portal under Tokens.")
    return hash_token(plaintext)


def _identity(token_hash: str, row: Sequence[Any] | None) -> TokenIdentity:
    """The identity of `_IDENTITY`'s row (None: no such token), or why it is refused."""
    if row is None:
        raise InvalidToken("Invalid gateway token. Create one in the portal under Tokens.")
    token_id, revoked_at, expires_at, user_id, plan, status, email_verified_at = row
    if revoked_at is not None:
        raise TokenRevoked("This gateway token has been revoked. Create a new one in the portal.")
    identity = TokenIdentity(token_id, user_id, token_hash, expires_at, plan)
    check_expiry(identity)
    if status != AccountStatus.ACTIVE:
        raise AccountSuspended("This account is suspended. Contact support.")
    if email_verified_at is None:
        raise EmailNotVerified(
            "Verify your email address before using the gateway: "
            "follow the link we emailed you, or ask for a new one in the portal."
        )
    return identity


def check_expiry(identity: TokenIdentity) -> None:
    if identity.expires_at is not None and identity.expires_at <= utcnow():
        raise TokenExpired("This gateway token has expired. Create a new one in the portal.")


async def touch_last_used(session: Executor, token_id: str, when: datetime) -> None:
    """Record use at most once a minute per token (keeps writes off the hot path)."""
    await session.execute(
        update(GatewayToken)
        .where(
            GatewayToken.id == token_id,
            (GatewayToken.last_used_at.is_(None))
            | (GatewayToken.last_used_at < when - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=when),
        execution_options=WITHOUT_SESSION_SYNC,
    )

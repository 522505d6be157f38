"""Token actions a person takes, from the Tokens page or the JSON API: one flow per
action, each owning its transaction and the mail that must follow the commit (the
revoked token's cached checks are dropped by `service.revoke_token` itself, through the
transaction). The views only translate requests and answers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import User
from portal.db import Database
from portal.email import messages
from portal.email.messages import Mail
from portal.email.service import Mailer, record
from portal.errors import NotFound
from portal.tokens import service as tokens
from portal.tokens.models import GatewayToken
from portal.tokens.spending import SpendingLimit

__all__ = ["CreatedToken", "create_token", "mint_announced", "revoke_token", "set_limit"]


@dataclass(frozen=True)
class CreatedToken:
    plaintext: str
    """The token itself: shown once, never stored (only its hash is)."""
    token: GatewayToken


async def create_token(
    db: Database,
    mailer: Mailer,
    *,
    user_id: str,
    name: str,
    tokens_url: str,
    limit: SpendingLimit | None = None,
) -> CreatedToken:
    """Mint a token for `user_id`, with a spending `limit` if given (ValueError for a bad
    name); after the commit, mail the owner that it exists."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("no such account")
        created, mail = await mint_announced(
            session, user, name=name, tokens_url=tokens_url, limit=limit
        )
    await mailer.send([mail])
    return created


async def mint_announced(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    tokens_url: str,
    limit: SpendingLimit | None = None,
) -> tuple[CreatedToken, Mail]:
    """Mint a token in the caller's transaction, with the mail telling its owner (recorded
    here; the caller sends it after the commit)."""
    plaintext, token = await tokens.create_token(session, user, name=name, limit=limit)
    mail = messages.token_created(
        user_id=user.id, to=user.email, name=user.name, token_name=token.name, tokens_url=tokens_url
    )
    await record(session, mail)
    return CreatedToken(plaintext, token), mail


async def revoke_token(db: Database, *, user_id: str, token_id: str) -> GatewayToken:
    """Revoke one of `user_id`'s tokens (another user's is NotFound); once it commits,
    every gateway refuses it at once (the service has its cached check dropped)."""
    async with db.transaction() as session:
        return await tokens.revoke_token(session, user_id=user_id, token_id=token_id[:64])


async def set_limit(
    db: Database, *, user_id: str, token_id: str, limit: SpendingLimit | None
) -> GatewayToken:
    """Set, change or (None) remove the spending limit of one of `user_id`'s tokens
    (another user's is NotFound); the gateways apply it from the commit on."""
    async with db.transaction() as session:
        return await tokens.set_limit(session, user_id=user_id, token_id=token_id[:64], limit=limit)

"""Token actions a person takes in the portal, with their side effects (notice email)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import User
from portal.email import messages
from portal.email.messages import Mail
from portal.email.service import record
from portal.tokens import service as tokens
from portal.tokens.models import GatewayToken

__all__ = ["create_token_with_notice"]


async def create_token_with_notice(
    session: AsyncSession, user: User, *, name: str, tokens_url: str
) -> tuple[str, GatewayToken, list[Mail]]:
    """Mint a token (ValueError for a bad name) and mail the owner that it exists."""
    plaintext, token = await tokens.create_token(session, user, name=name)
    mail = messages.token_created(
        user_id=user.id, to=user.email, name=user.name, token_name=token.name, tokens_url=tokens_url
    )
    return plaintext, token, [await record(session, mail)]

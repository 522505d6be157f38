"""The two steps of connecting an app, each owning its transaction: the person's
approval (a code for the callback) and the app's exchange (the code for a token, the
owner mailed after the commit, as for a token made on the Tokens page)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.accounts import throttle
from portal.accounts.models import User
from portal.connect import service as codes
from portal.connect.authorization import ConnectRequest, with_params
from portal.db import Database
from portal.email.service import Mailer
from portal.errors import RateLimited
from portal.tokens import flows as token_flows
from portal.tokens.models import GatewayToken
from portal.tokens.spending import SpendingLimit

__all__ = ["ConnectedToken", "approve", "deny", "exchange"]


@dataclass(frozen=True)
class ConnectedToken:
    plaintext: str
    """Shown once, to the app; only its hash is stored."""
    token: GatewayToken
    app_name: str


async def approve(
    db: Database,
    *,
    user_id: str,
    approved: ConnectRequest,
    limit: SpendingLimit | None = None,
) -> str:
    """The person said yes (with a spending `limit` for the token, if they gave one): the
    callback URL carrying a new one-time code (and `state`)."""
    async with db.transaction() as session:
        code = await codes.issue_code(session, user_id=user_id, approved=approved, limit=limit)
    return with_params(approved.callback_url, code=code, state=approved.state)


def deny(refused: ConnectRequest) -> str:
    """The person said no: the callback URL telling the app so (RFC 6749 §4.1.2.1)."""
    return with_params(refused.callback_url, error="access_denied", state=refused.state)


async def exchange(
    db: Database,
    mailer: Mailer,
    *,
    code: str,
    verifier: str,
    callback_url: str,
    client: str,
    tokens_url: str,
) -> ConnectedToken:
    """Trade a code for a new gateway token named after the app. RateLimited past the
    client's limit (the attempt counts before the code is looked at); CodeRefused with
    the reason for a code that is unknown, used, expired or bound to something else."""
    async with db.transaction() as session:
        wait = await throttle.take(session, throttle.CONNECT_EXCHANGE, client)
    if wait:
        raise RateLimited(f"Too many code exchanges; try again in {wait} s.", retry_after=wait)
    async with db.transaction() as session:
        redeemed = await codes.redeem_code(
            session, code=code, verifier=verifier, callback_url=callback_url
        )
        user = await session.get(User, redeemed.user_id)
        if user is None:  # cascades remove the codes of a deleted account; defensive
            raise codes.CodeRefused("This code is not known here. Connect the app again.")
        created, mail = await token_flows.mint_announced(
            session, user, name=redeemed.app_name, tokens_url=tokens_url, limit=redeemed.limit
        )
        await codes.link_token(session, code_id=redeemed.id, token_id=created.token.id)
    await mailer.send([mail])
    return ConnectedToken(created.plaintext, created.token, redeemed.app_name)

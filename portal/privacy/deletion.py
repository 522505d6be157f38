"""Self-service account deletion: the database part, in the caller's transaction.

Every token is revoked, every session ends, operator notes on the ledger are cleared,
and the account row is removed. The schema finishes the job (`privacy.linked`): rows
that only describe the person cascade away; usage records and ledger entries are kept
for accounting with `user_id` set to NULL, so nothing left points to the person.
Once the caller's transaction commits, the gateways' cached checks of the account's
tokens are dropped: `tokens.revoke_token` and `accounts.delete_user` register that on
the session themselves (`portal.db.effects`); a rollback drops nothing.

The Stripe subscription is canceled before this runs, outside the transaction
(`privacy.flows.delete_account` says why in that order). What lies outside the database
(the SQLite write-ahead log, the development mail outbox) is cleared after the commit by
`privacy.leftovers.erase_leftovers`, with the addresses returned here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.accounts import throttle
from portal.accounts.flows import FlowError
from portal.accounts.models import AccountLink, User
from portal.accounts.passwords import verify_password_async
from portal.credits import ledger
from portal.email import messages
from portal.email.messages import Mail
from portal.sessions import service as sessions
from portal.tokens import service as tokens

__all__ = ["DeletedAccount", "check_password", "erase_account"]


@dataclass(frozen=True)
class DeletedAccount:
    mail: list[Mail]  # the confirmation, to send after the commit
    addresses: frozenset[str]  # the account's address and any it was being moved to


async def check_password(user: User, password: str) -> None:
    """FlowError unless `password` is the account's: nothing is done without it."""
    if not await verify_password_async(user.password_hash, password):
        raise FlowError("Your password is not correct; the account was not deleted.")


async def erase_account(session: AsyncSession, user: User) -> DeletedAccount:
    """Delete `user` for good; returns what to do after the commit."""
    for token in await tokens.list_tokens(session, user.id):
        await tokens.revoke_token(session, user_id=user.id, token_id=token.id)
    await sessions.end_all_sessions(session, user.id)
    await throttle.clear_account(session, user.email)
    await ledger.clear_notes(session, user.id)  # an operator's note could name the person
    goodbye = messages.account_deleted(to=user.email, name=user.name)
    pending = await session.scalars(
        select(AccountLink.new_email).where(
            AccountLink.user_id == user.id, AccountLink.new_email.is_not(None)
        )
    )
    addresses = frozenset({user.email, *(address for address in pending if address)})
    await accounts.delete_user(session, user)
    return DeletedAccount([goodbye], addresses)

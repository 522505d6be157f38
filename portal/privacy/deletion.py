"""Self-service account deletion.

After the password is re-entered: every token is revoked (through the tokens service, so
caches hear of it), every session ends, operator notes on the ledger are cleared, and
the account row is removed. The schema finishes the job (`privacy.linked`): rows that
only describe the person cascade away; usage records and ledger entries are kept for
accounting with `user_id` set to NULL, so nothing left points to the person.

What lies outside the transaction (the SQLite write-ahead log, the development mail
outbox) is cleared after the commit by `privacy.leftovers.erase_leftovers`, with the
addresses returned here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.accounts import throttle
from portal.accounts.flows import FlowError
from portal.accounts.models import AccountLink, User
from portal.accounts.passwords import verify_password_async
from portal.billing import service as billing_service
from portal.billing.runtime import Billing
from portal.credits.models import LedgerEntry
from portal.email import messages
from portal.email.messages import Mail
from portal.sessions import service as sessions
from portal.tokens import service as tokens

__all__ = ["DeletedAccount", "delete_account"]


@dataclass(frozen=True)
class DeletedAccount:
    mail: list[Mail]  # the confirmation, to send after the commit
    addresses: frozenset[str]  # the account's address and any it was being moved to


async def delete_account(
    session: AsyncSession, user: User, *, password: str, billing: Billing | None = None
) -> DeletedAccount:
    """Delete `user` for good; returns what to do after the commit.

    The Stripe subscription is cancelled first: if Stripe cannot be reached, this raises
    (stripe.StripeError) before anything is written, and the person can simply retry."""
    if not await verify_password_async(user.password_hash, password):
        raise FlowError("Your password is not correct; the account was not deleted.")
    await billing_service.cancel_billing_for_user(session, user.id, billing=billing)
    for token in await tokens.list_tokens(session, user.id):
        await tokens.revoke_token(session, user_id=user.id, token_id=token.id)
    await sessions.end_all_sessions(session, user.id)
    await throttle.clear_account(session, user.email)
    # An operator's note could name the person; the amount and cause stay for accounting.
    await session.execute(
        update(LedgerEntry).where(LedgerEntry.user_id == user.id).values(note=None)
    )
    goodbye = messages.account_deleted(to=user.email, name=user.name)
    pending = await session.scalars(
        select(AccountLink.new_email).where(
            AccountLink.user_id == user.id, AccountLink.new_email.is_not(None)
        )
    )
    addresses = frozenset({user.email, *(address for address in pending if address)})
    await accounts.delete_user(session, user)
    return DeletedAccount([goodbye], addresses)

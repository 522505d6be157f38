"""Privacy actions a person takes from the Account page or the JSON API: one flow per
action, shared by both views."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe
from sqlalchemy.exc import DBAPIError

from portal.accounts.models import User
from portal.billing import flows as billing_flows
from portal.billing import service as billing_service
from portal.billing.runtime import Billing
from portal.db import Database
from portal.errors import NotFound
from portal.privacy.deletion import DeletedAccount, check_password, erase_account
from portal.privacy.export import build_export, export_filename, export_json

__all__ = ["ExportFile", "delete_account", "export_account"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportFile:
    content: bytes
    """The JSON document (format `privacy.export.EXPORT_FORMAT`)."""
    filename: str


async def export_account(db: Database, *, user_id: str) -> ExportFile:
    """Everything held about `user_id`, read in one consistent snapshot."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("no such account")
        document = await build_export(session, user)
    return ExportFile(export_json(document), export_filename())


async def delete_account(
    db: Database, billing: Billing, *, user_id: str, password: str
) -> DeletedAccount:
    """Delete the account for good, its Stripe subscriptions canceled; returns what to do
    after the commit (mail, leftovers). FlowError for a wrong password.

    Stripe is called outside any transaction (no lock held across the network), and
    before the deletion: cancel, then delete. The other order could commit a deletion
    and then fail to reach Stripe, leaving a paying subscription on an account that no
    longer exists, with nobody able to sign in to stop it. In this order a failure at
    Stripe (stripe.StripeError) deletes nothing and the person retries; a failure after
    the cancellation leaves an account without a subscription, which is what its owner
    asked for on the way out. A subscription that a Checkout still open in another tab
    started while this ran is canceled by a second pass after the commit."""
    async with db.session() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("no such account")
        await check_password(user, password)
        account = await billing_service.get_account(session, user_id)
    customer_id = account.stripe_customer_id if account is not None else None
    await billing_flows.cancel_subscriptions(billing, customer_id)
    for attempt in range(_ERASE_ATTEMPTS):
        try:
            async with db.transaction() as session:
                user = await session.get(User, user_id)
                if user is None:
                    raise NotFound("no such account")
                deleted = await erase_account(session, user)
            break
        except DBAPIError as exc:
            # The cancellation's own webhooks may be writing this person's billing rows
            # right now; PostgreSQL then aborts one side of the deadlock: retry ours.
            if attempt + 1 == _ERASE_ATTEMPTS or not _is_transient(exc):
                raise
    await _cancel_late_subscriptions(billing, customer_id)
    return deleted


_ERASE_ATTEMPTS = 3
_TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def _is_transient(error: DBAPIError) -> bool:
    for cause in (error.orig, getattr(error.orig, "__cause__", None)):
        if getattr(cause, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
    return False


async def _cancel_late_subscriptions(billing: Billing, customer_id: str | None) -> None:
    """The second pass: the account is gone, so a failure is only logged, for the operator."""
    try:
        if late := await billing_flows.cancel_subscriptions(billing, customer_id):
            log.warning("canceled %d subscription(s) started during deletion", len(late))
    except stripe.StripeError as exc:
        log.error(
            "deleted account's Stripe customer %s: second cancellation pass failed (%s); "
            "cancel its subscriptions by hand",
            customer_id,
            type(exc).__name__,
        )

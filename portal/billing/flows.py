"""Billing actions that talk to Stripe and to the database: start a Checkout, open the
Billing Portal, fulfil from the success redirect, sync a user from Stripe, cancel a
customer's subscriptions (account deletion).

Stripe is called outside database transactions (no lock is held across the network);
what it answered is then applied in one short transaction by `service.apply_findings`.
"""

from __future__ import annotations

import logging
import re

import stripe

from portal.billing import events, reads, service
from portal.billing.runtime import Billing
from portal.billing.service import Applied
from portal.billing.stripe_gateway import CheckoutParams
from portal.db import Database
from portal.errors import GatewayError, NotFound

__all__ = [
    "CheckoutRefused",
    "RedirectResult",
    "cancel_subscriptions",
    "fulfil_redirect",
    "open_portal",
    "start_checkout",
    "sync_user",
]

log = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")


class CheckoutRefused(GatewayError):
    status_code = 409
    error_code = "checkout_refused"


async def ensure_customer(database: Database, billing: Billing, *, user_id: str, email: str) -> str:
    """The user's Stripe customer id, created at Stripe on first use."""
    async with database.session() as session:
        account = await service.get_account(session, user_id)
    if account is not None and account.stripe_customer_id:
        return account.stripe_customer_id
    customer = await billing.stripe.create_customer(email=email, user_id=user_id)
    async with database.transaction() as session:
        account = await service.lock_account(session, user_id)
        await service.link_customer(session, account, customer["id"])
        return account.stripe_customer_id or customer["id"]


def checkout_params(
    billing: Billing, *, user_id: str, customer_id: str, kind: str, item_id: str
) -> CheckoutParams:
    base = billing.public_url
    params: CheckoutParams = {
        "customer": customer_id,
        "client_reference_id": user_id,
        "success_url": f"{base}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{base}/billing/cancel",
    }
    if kind == "plan" and item_id in billing.catalog.plans:
        metadata = {"user_id": user_id, "plan": item_id}
        price = billing.catalog.plans[item_id].stripe_price_id
        params["mode"] = "subscription"
        params["subscription_data"] = {"metadata": metadata}
    elif kind == "pack" and item_id in billing.catalog.packs:
        metadata = {"user_id": user_id, "pack": item_id}
        price = billing.catalog.packs[item_id].stripe_price_id
        params["mode"] = "payment"
        params["payment_intent_data"] = {"metadata": metadata}
        if billing.catalog.auto_top_up.enabled:
            # Keep the card for auto top-ups (Checkout tells the buyer it is saved).
            params["payment_intent_data"]["setup_future_usage"] = "off_session"
    else:
        raise NotFound("no such plan or credit pack")
    params["line_items"] = [{"price": price, "quantity": 1}]
    params["metadata"] = metadata
    return params


async def start_checkout(
    database: Database, billing: Billing, *, user_id: str, email: str, kind: str, item_id: str
) -> str:
    """Create a Checkout Session for a plan or a pack; the URL of Stripe's hosted page."""
    if kind == "plan":
        async with database.session() as session:
            account = await service.get_account(session, user_id)
        if service.has_live_subscription(account):
            raise CheckoutRefused(
                "You already have a subscription: change or cancel it in the billing portal."
            )
    customer_id = await ensure_customer(database, billing, user_id=user_id, email=email)
    params = checkout_params(
        billing, user_id=user_id, customer_id=customer_id, kind=kind, item_id=item_id
    )
    checkout = await billing.stripe.create_checkout_session(params)
    url: str = checkout["url"]  # set while the session is open, as this new one is
    return url


async def open_portal(database: Database, billing: Billing, *, user_id: str) -> str:
    """The URL of Stripe's Billing Portal for the user (plan, card, cancel, invoices)."""
    async with database.session() as session:
        account = await service.get_account(session, user_id)
    if account is None or not account.stripe_customer_id:
        raise NotFound("nothing to manage yet: buy a plan or credits first")
    portal = await billing.stripe.create_portal_session(
        customer=account.stripe_customer_id, return_url=f"{billing.public_url}/billing"
    )
    url: str = portal["url"]
    return url


class RedirectResult:
    def __init__(self, findings: reads.Findings, applied: Applied) -> None:
        self.paid = any(p.paid for p in findings.purchases)
        self.granted_units = sum(p.credits_units for p in findings.purchases if p.paid)
        self.applied = applied


async def fulfil_redirect(
    database: Database, billing: Billing, *, user_id: str, session_id: str
) -> RedirectResult:
    """Fulfil from Stripe's success redirect, as the webhook would (whichever comes first
    grants; the other finds it done). Only the session's own user may do this."""
    if not _SESSION_ID.match(session_id or ""):
        raise NotFound("no such checkout")
    try:
        findings = await reads.read_checkout(billing, session_id)
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            raise NotFound("no such checkout") from None
        raise
    async with database.transaction() as session:
        applied = await service.apply_findings(session, findings, expected_user_id=user_id)
    assert applied is not None
    return RedirectResult(findings, applied)


async def sync_user(database: Database, billing: Billing, *, user_id: str) -> Applied | None:
    """Re-read the user's customer from Stripe and repair local state: subscription, plan,
    card, any paid purchase never granted, any refund or dispute never applied. The
    customer's unmatched events are then handled (`applied.closed_events`)."""
    async with database.session() as session:
        account = await service.get_account(session, user_id)
    customer_id = account.stripe_customer_id if account is not None else None
    if customer_id is None:
        found = await billing.stripe.find_customer_ids(user_id)
        if not found:
            return None
        customer_id = found[0]
    findings = await reads.read_customer(billing, customer_id)
    findings.user_hint = user_id
    async with database.transaction() as session:
        account = await service.lock_account(session, user_id)
        await service.link_customer(session, account, customer_id)
        applied = await service.apply_findings(session, findings, expected_user_id=user_id)
        if applied is not None:
            applied.closed_events = await events.close_for_customer(session, customer_id)
    return applied


async def cancel_subscriptions(billing: Billing, customer_id: str | None) -> list[str]:
    """Cancel, at Stripe and at once, every live subscription of `customer_id`; the ids
    canceled. For account deletion (`portal.privacy.flows`), outside any transaction:
    raises stripe.StripeError when Stripe cannot be reached. Writes nothing here: Stripe's
    `customer.subscription.deleted` updates the records, or they go with the account."""
    if customer_id is None:
        return []
    if billing.stripe_gateway is None:
        # Billing was switched off after this customer paid: nothing can be called. The
        # account still goes (the person asked for it); the operator must cancel by hand.
        log.error(
            "could not cancel the subscriptions of Stripe customer %s: STRIPE_SECRET_KEY is unset",
            customer_id,
        )
        return []
    canceled = []
    for subscription in await billing.stripe.subscriptions(customer_id):
        if subscription.get("status") in reads.ENDED_STATUSES:
            continue
        try:
            await billing.stripe.cancel_subscription(subscription["id"])
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":  # already gone is what we wanted
                raise
        canceled.append(subscription["id"])
    return canceled

"""Stripe webhooks: verify, then one reader per event type, applied once.

    verify()        the `Stripe-Signature` header over the raw body, with the endpoint's
                    secret (Stripe's SDK); timestamps older than 5 minutes are refused
    handle_event()  read the objects the event names from Stripe's API (current state,
                    so order does not matter), then in one transaction: record the event
                    id (primary key: a duplicate delivery stops here) and apply

Event types not listed in HANDLED are acknowledged and ignored. A failure (Stripe or the
database unreachable) rolls everything back, including the event id, and the endpoint
answers 5xx so Stripe delivers again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import stripe

from portal.billing import reads, service
from portal.billing.models import StripeEvent
from portal.billing.runtime import Billing, BillingNotConfigured
from portal.db import Database
from portal.db.base import utcnow
from portal.db.upsert import insert_ignore

__all__ = ["HANDLED", "TOLERANCE_SECONDS", "InvalidWebhook", "handle_event", "verify"]

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300  # Stripe's default: a replayed old delivery is refused

Obj = dict[str, Any]
Reader = Callable[[Billing, Obj], Awaitable[reads.Findings]]


class InvalidWebhook(Exception):
    """Not a delivery from Stripe: bad or missing signature, stale timestamp, not an event."""


def verify(billing: Billing, payload: bytes, signature: str | None) -> Obj:
    """The verified event as a dict, or InvalidWebhook."""
    if not billing.webhook_secret:
        raise BillingNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, billing.webhook_secret, TOLERANCE_SECONDS
        ).to_dict()
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(exc.user_message or "bad signature") from None
    except Exception:  # signed but not JSON / not an event
        raise InvalidWebhook("not a Stripe event") from None
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise InvalidWebhook("not a Stripe event")
    return event


def _customer_of(obj: Obj) -> str:
    customer = obj.get("customer")
    return customer["id"] if isinstance(customer, dict) else customer


async def _checkout(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_checkout(billing, obj["id"])


async def _invoice_paid(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_invoice(billing, obj["id"])


async def _customer_state(billing: Billing, obj: Obj) -> reads.Findings:
    customer_id = obj["id"] if obj.get("object") == "customer" else _customer_of(obj)
    if not customer_id:
        return reads.Findings()
    return await reads.read_customer_state(billing, customer_id)


async def _charge(billing: Billing, obj: Obj) -> reads.Findings:
    charge_id = obj["id"] if obj.get("object") == "charge" else obj.get("charge")
    if isinstance(charge_id, dict):
        charge_id = charge_id["id"]
    return await reads.read_charge(billing, charge_id) if charge_id else reads.Findings()


HANDLED: dict[str, Reader] = {
    "checkout.session.completed": _checkout,  # grants only when payment_status is paid
    "checkout.session.async_payment_succeeded": _checkout,
    "checkout.session.async_payment_failed": _checkout,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _customer_state,
    "customer.subscription.created": _customer_state,
    "customer.subscription.updated": _customer_state,
    "customer.subscription.deleted": _customer_state,
    "customer.updated": _customer_state,  # default card changed
    "charge.refunded": _charge,
    "charge.dispute.created": _charge,
}


async def already_handled(database: Database, event_id: str) -> bool:
    async with database.session() as session:
        return await session.get(StripeEvent, event_id) is not None


async def handle_event(
    database: Database, billing: Billing, event: Obj, *, replay: bool = False
) -> str:
    """Apply one event; what happened, for the response and the log.

    `replay` (the admin command) re-applies an event already recorded; grants and
    claw-backs are keyed by what was paid, so that changes nothing already done."""
    event_id, event_type = event["id"], event["type"]
    reader = HANDLED.get(event_type)
    if reader is None:
        return "ignored"
    if not replay and await already_handled(database, event_id):
        return "duplicate"
    obj = (event.get("data") or {}).get("object") or {}
    try:
        findings = await reader(billing, obj)
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise
        log.info("stripe event %s (%s): its object is gone at Stripe", event_id, event_type)
        findings = reads.Findings()
    async with database.transaction() as session:
        recorded = await insert_ignore(
            session, StripeEvent, id=event_id, type=event_type, received_at=utcnow()
        )
        if not recorded and not replay:
            return "duplicate"
        applied = await service.apply_findings(session, findings)
    await service.announce_plan_change(applied, billing)
    if applied is None:
        log.info("stripe event %s (%s): not a customer of ours", event_id, event_type)
        return "not ours"
    return "replayed" if replay else "processed"

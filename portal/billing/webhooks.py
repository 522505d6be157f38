"""Stripe webhooks: verify, then one reader per event type, applied once.

    verify()        the `Stripe-Signature` header over the raw body, with the endpoint's
                    secret (Stripe's SDK); timestamps more than 5 minutes old, or more
                    than 5 minutes ahead of our clock, are refused
    handle_event()  check the event's object has the shape its type promises (else
                    MalformedEvent, a 400), read the objects it names from Stripe's API
                    (current state, so order does not matter), then in one transaction:
                    claim the event id (a duplicate delivery stops here) and apply

An event that would move credits or give a plan (`Findings.concerns_us`) but that no
user matches, or whose object is gone at Stripe, is recorded as *unmatched*
(`events.py`): listed for the operator and tried again on redelivery. Event types not in
HANDLED are acknowledged and ignored. A failure (Stripe or the database unreachable)
rolls everything back, including the event id, and the endpoint answers 5xx so Stripe
delivers again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import auto_top_up, auto_top_up_flows, events, reads, service
from portal.billing.runtime import Billing, BillingNotConfigured
from portal.db import Database
from portal.email.messages import Mail
from portal.email.service import Mailer

__all__ = [
    "HANDLED",
    "TOLERANCE_SECONDS",
    "InvalidWebhook",
    "MalformedEvent",
    "handle_event",
    "verify",
]

log = logging.getLogger(__name__)

TOLERANCE_SECONDS = 300  # Stripe's default: a replayed old delivery is refused

Obj = dict[str, Any]
Reader = Callable[[Billing, Obj], Awaitable[reads.Findings]]

_STRIPE_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")


class InvalidWebhook(Exception):
    """Not a delivery from Stripe: bad or missing signature, stale or future timestamp,
    not an event."""


class MalformedEvent(InvalidWebhook):
    """Signed, but its `data.object` is not what its type promises: nothing to apply."""


def _signed_at(header: str) -> int | None:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            return int(value) if value.isdigit() else None
    return None


def verify(billing: Billing, payload: bytes, signature: str | None) -> Obj:
    """The verified event as a dict, or InvalidWebhook."""
    if not billing.webhook_secret:
        raise BillingNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    try:
        event: Obj = stripe.Webhook.construct_event(
            payload, signature, billing.webhook_secret, TOLERANCE_SECONDS
        ).to_dict()
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(exc.user_message or "bad signature") from None
    except Exception:  # signed but not JSON / not an event
        raise InvalidWebhook("not a Stripe event") from None
    # The SDK refuses old timestamps only; one from the future is as suspect.
    signed_at = _signed_at(signature or "")
    if signed_at is None or signed_at > time.time() + TOLERANCE_SECONDS:
        raise InvalidWebhook("Timestamp outside the tolerance zone")
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise InvalidWebhook("not a Stripe event")
    return event


def _ref(value: Any, field: str) -> str | None:
    """A Stripe id from a field holding the id or the expanded object."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, str) and _STRIPE_ID.match(value):
        return value
    raise MalformedEvent(f"data.object.{field} is not a Stripe id")


async def _checkout(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_checkout(billing, obj["id"])


async def _invoice_paid(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_invoice(billing, obj["id"])


async def _customer_state(billing: Billing, obj: Obj) -> reads.Findings:
    if obj["object"] == "customer":
        customer_id: str | None = obj["id"]
    else:
        customer_id = _ref(obj.get("customer"), "customer")
    if not customer_id:
        return reads.Findings()
    return await reads.read_customer_state(billing, customer_id)


async def _charge(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_charge(billing, obj["id"])


async def _dispute(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_dispute(billing, obj["id"])


async def _payment_intent(billing: Billing, obj: Obj) -> reads.Findings:
    return await reads.read_payment_intent(billing, obj["id"])


# event type -> (the `object` its data.object must be, its reader)
HANDLED: dict[str, tuple[str, Reader]] = {
    "checkout.session.completed": ("checkout.session", _checkout),  # grants only when paid
    "checkout.session.async_payment_succeeded": ("checkout.session", _checkout),
    "checkout.session.async_payment_failed": ("checkout.session", _checkout),
    "invoice.paid": ("invoice", _invoice_paid),
    "invoice.payment_failed": ("invoice", _customer_state),
    "customer.subscription.created": ("subscription", _customer_state),
    "customer.subscription.updated": ("subscription", _customer_state),
    "customer.subscription.deleted": ("subscription", _customer_state),
    "customer.updated": ("customer", _customer_state),  # default card changed
    "charge.refunded": ("charge", _charge),
    # an auto top-up's off-session payment: its credits come only from here (any other
    # PaymentIntent reads as nothing: packs and plans are granted by their own events)
    "payment_intent.succeeded": ("payment_intent", _payment_intent),
    # ...and one the bank declined after Stripe said "processing": auto top-up goes off
    "payment_intent.payment_failed": ("payment_intent", _payment_intent),
    # a dispute is followed to its end: held when Stripe withdraws the money, kept if
    # lost, given back if won; an inquiry (no money moved) takes nothing
    "charge.dispute.created": ("dispute", _dispute),
    "charge.dispute.funds_withdrawn": ("dispute", _dispute),  # an inquiry escalated
    "charge.dispute.funds_reinstated": ("dispute", _dispute),
    "charge.dispute.closed": ("dispute", _dispute),
}


def event_object(event: Obj, expected: str) -> Obj:
    """The event's `data.object`, if it is the kind of object its type promises."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or obj.get("object") != expected:
        raise MalformedEvent(f"data.object is not a {expected}")
    _ref(obj.get("id") or "", "id")
    return obj


def _customer_named(obj: Obj) -> str | None:
    """The customer the event's own copy names (for the operator, when Stripe cannot say)."""
    if obj["object"] == "customer":
        return str(obj["id"])
    try:
        return _ref(obj.get("customer"), "customer")
    except MalformedEvent:
        return None


async def already_handled(database: Database, event_id: str) -> bool:
    async with database.session() as session:
        return await events.is_handled(session, event_id)


async def _match_by_customer_metadata(
    database: Database, billing: Billing, findings: reads.Findings
) -> None:
    """For objects we did not create (no user id on them): the user id an operator put on
    the Stripe customer, read only when nothing else matches."""
    if not findings.customer_id or findings.user_hint or not findings.concerns_us:
        return
    async with database.session() as session:
        if await service.resolve_user(session, findings.customer_id, None) is not None:
            return
    try:
        findings.user_hint = await reads.customer_user_hint(billing, findings.customer_id)
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise


async def handle_event(
    database: Database,
    billing: Billing,
    event: Obj,
    *,
    replay: bool = False,
    mailer: Mailer | None = None,
) -> str:
    """Apply one event; what happened, for the response and the log. The emails it
    causes (an auto top-up refused) go out through `mailer` after the commit.

    `replay` (the admin command) re-applies an event already recorded; grants and
    claw-backs are keyed by what was paid, so that changes nothing already done."""
    event_id, event_type = event["id"], event["type"]
    handler = HANDLED.get(event_type)
    if handler is None:
        return "ignored"
    expected, reader = handler
    obj = event_object(event, expected)
    if not replay and await already_handled(database, event_id):
        return "duplicate"
    gone = False
    try:
        findings = await reader(billing, obj)
    except stripe.InvalidRequestError as exc:
        if exc.code != "resource_missing":
            raise
        log.info("stripe event %s (%s): its object is gone at Stripe", event_id, event_type)
        findings, gone = reads.Findings(), True
    await _match_by_customer_metadata(database, billing, findings)
    mails: list[Mail] = []
    async with database.transaction() as session:
        claimed = await events.claim(session, event_id, event_type, replay=replay)
        if claimed is None:
            return "duplicate"
        row, new = claimed
        applied = None if gone else await service.apply_findings(session, findings)
        top_up = findings.top_up
        if applied is not None and top_up is not None:
            mails += await _top_up_outcome(session, billing, applied.user_id, top_up)
        unmatched = (
            "object gone at Stripe"
            if gone
            else "no user matches"
            if applied is None and findings.concerns_us
            else None
        )
        events.record_outcome(
            row,
            new=new,
            unmatched_reason=unmatched,
            customer_id=findings.customer_id or _customer_named(obj),
            object_id=obj["id"],
        )
    if mailer is not None:
        await mailer.send(mails)
    if unmatched is not None:
        log.warning("stripe event %s (%s): unmatched, %s", event_id, event_type, unmatched)
        return "unmatched"
    if applied is None:
        log.info("stripe event %s (%s): not a customer of ours", event_id, event_type)
        return "not ours"
    return "replayed" if replay else "processed"


async def _top_up_outcome(
    session: AsyncSession, billing: Billing, user_id: str, top_up: reads.TopUpPaid
) -> list[Mail]:
    """An auto top-up's payment, paid (its attempt ends, credited) or refused (the
    attempt ends, auto top-up goes off, the person is told once)."""
    if top_up.succeeded:
        await auto_top_up.credited(session, user_id, top_up)
    elif top_up.failure is not None and await auto_top_up.refused_later(session, user_id, top_up):
        return await auto_top_up_flows.failure_notice(session, billing, user_id, top_up.failure)
    return []

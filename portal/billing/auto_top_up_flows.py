"""Auto top-up's Stripe side: charge the saved card off-session for an attempt that
`auto_top_up.start` made, then record what Stripe answered in one short transaction.

    charge(attempt)   the card: the customer's default (Billing Portal) or the card a
                      Checkout saved (`setup_future_usage=off_session`); a PaymentIntent
                      created and confirmed off-session with the attempt's idempotency key
                      -> succeeded / processing: `paid` (credits come with the webhook)
                      -> declined, authentication required, no card: `failed`, auto top-up
                         off, and one email with a link to the page that fixes it
                         (`failure_notice`; the same when a processing payment is
                         declined later: `webhooks`, `payment_intent.payment_failed`)
                      -> Stripe unreachable: the attempt stays pending, and `resume_stale`
                         asks again later with the same key (never a second charge)

Stripe is never called inside a database transaction (docs/architecture.md, 3).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.billing import auto_top_up, service
from portal.billing.models import AutoTopUpAttempt
from portal.billing.reads import TOP_UP_METADATA
from portal.billing.runtime import Billing
from portal.credits.units import format_units
from portal.db import Database
from portal.db.base import utcnow
from portal.email import messages
from portal.email import service as email
from portal.email.messages import Mail
from portal.email.service import Mailer

__all__ = [
    "NO_SAVED_CARD",
    "STALE_AFTER",
    "charge",
    "failure_notice",
    "resume_stale",
    "settings_url",
]

log = logging.getLogger(__name__)

NO_SAVED_CARD = "no_saved_card"
STALE_AFTER = timedelta(minutes=2)
"""A pending attempt this old lost its answer: ask Stripe again, with the same key."""
KEY_LIFETIME = timedelta(hours=23)
"""Stripe keeps an idempotency key 24 hours; past that a retry could charge again, so an
attempt still unanswered then is given up instead."""


def settings_url(billing: Billing) -> str:
    return f"{billing.public_url}/billing/auto-top-up"


async def charge(
    database: Database, billing: Billing, mailer: Mailer, attempt: AutoTopUpAttempt
) -> str:
    """Pay for `attempt`; what happened (for the log): paid, failed:<code>, or pending."""
    async with database.session() as session:
        account = await service.get_account(session, attempt.user_id)
    customer = account.stripe_customer_id if account is not None else None
    try:
        card = await billing.stripe.saved_card(customer) if customer else None
        if card is None:
            return await _failed(database, billing, mailer, attempt, NO_SAVED_CARD, None)
        intent = await billing.stripe.charge_off_session(
            customer=str(customer),
            payment_method=card,
            amount=attempt.price_minor,
            currency=attempt.currency,
            metadata={
                "user_id": attempt.user_id,
                TOP_UP_METADATA: str(attempt.sequence),
                "credits_units": str(attempt.amount_units),
            },
            description=f"Auto top-up: {format_units(attempt.amount_units)} credits",
            idempotency_key=auto_top_up.idempotency_key(attempt.user_id, attempt.sequence),
        )
    except stripe.CardError as refused:
        code = str(refused.code or "card_declined")
        return await _failed(database, billing, mailer, attempt, code, _intent_id(refused))
    except stripe.StripeError as exc:  # unreachable, rate limited...: ask again later
        log.warning("auto top-up %d not answered: %s", attempt.id, type(exc).__name__)
        return "pending"
    if intent.get("status") in ("succeeded", "processing"):
        async with database.transaction() as session:
            await auto_top_up.paid(session, attempt.id, str(intent["id"]))
        return "paid"
    # requires_action / requires_payment_method: the bank wants the person
    code = "authentication_required" if intent.get("status") == "requires_action" else "failed"
    return await _failed(database, billing, mailer, attempt, code, str(intent["id"]))


def _intent_id(refused: stripe.CardError) -> str | None:
    intent = getattr(refused.error, "payment_intent", None) if refused.error else None
    if intent is None:
        return None
    value = intent.get("id") if hasattr(intent, "get") else None
    return str(value) if value else None


async def _failed(
    database: Database,
    billing: Billing,
    mailer: Mailer,
    attempt: AutoTopUpAttempt,
    code: str,
    intent_id: str | None,
) -> str:
    mails: list[Mail] = []
    async with database.transaction() as session:
        if await auto_top_up.failed(session, attempt.id, code=code, payment_intent_id=intent_id):
            mails += await failure_notice(session, billing, attempt.user_id, code)
    await mailer.send(mails)
    log.info("auto top-up %d failed: %s", attempt.id, code)
    return f"failed:{code}"


async def failure_notice(
    session: AsyncSession, billing: Billing, user_id: str, code: str
) -> list[Mail]:
    """The email saying auto top-up failed and is off, with the link that fixes it,
    recorded in the caller's transaction (send it after the commit); none for an
    address not verified."""
    user = await accounts.get_by_id(session, user_id)
    if user is None or user.email_verified_at is None:
        return []
    mail = messages.auto_top_up_failed(
        user_id=user.id, to=user.email, name=user.name, reason=code, fix_url=settings_url(billing)
    )
    return [await email.record(session, mail)]


async def resume_stale(database: Database, billing: Billing, mailer: Mailer) -> int:
    """Ask Stripe again about attempts whose answer was lost; how many were asked."""
    now = utcnow()
    async with database.session() as session:
        attempts = await auto_top_up.stale(session, older_than=now - STALE_AFTER)
    for attempt in attempts:
        if attempt.created_at < now - KEY_LIFETIME:
            await _failed(database, billing, mailer, attempt, "no_answer_from_stripe", None)
        else:
            await charge(database, billing, mailer, attempt)
    return len(attempts)

"""Billing tables. From Stripe we keep only what the Billing page and the export show:
customer id, subscription id, plan, status, current period end, card brand and last4.

Money never lives here: purchases are ledger entries (`portal.credits.ledger`) with
`cause_type="stripe_event"` and, as `cause_id`, the id of the thing paid - the Checkout
Session (`cs_…`) for a credit pack, the invoice (`in_…`) for a subscription period - so
the webhook, the success redirect, a replay and `billing sync` grant it once between
them. A claw-back's `cause_id` is `<paid id>:reversal:<amount reversed so far, cents>`.
An auto top-up's grant is keyed by its PaymentIntent (`pi_…`).

Auto top-up (`portal.billing.auto_top_up`): every attempt (`auto_top_up_attempts`),
numbered per account; the person's setting is `portal.credits.models.AutoTopUp` (the
settlement reads its threshold). A unique index on the
attempts not yet finished keeps at most one in flight per account, whatever races.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.credits.units import credit_units_column
from portal.db.base import Base, UTCDateTime, utcnow
from portal.db.columns import BigId, EnumString, created_at_column

__all__ = [
    "AttemptStatus",
    "AutoTopUpAttempt",
    "BillingAccount",
    "EventOutcome",
    "StripeEvent",
    "SubscriptionStatus",
]


class SubscriptionStatus(StrEnum):
    """Stripe's subscription statuses. `BillingAccount.status` stores what Stripe sent,
    as sent (a status Stripe adds later is kept, and counts as not live)."""

    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class BillingAccount(Base):
    """One per user who has been to Stripe; the subscription shown is the customer's
    most relevant one (a live one first, else the latest)."""

    __tablename__ = "billing_accounts"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str | None] = mapped_column(String(64))  # our plan id (config.yaml)
    status: Mapped[str | None] = mapped_column(String(32))  # Stripe's subscription status
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    card_brand: Mapped[str | None] = mapped_column(String(32))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    # When the subscription state above was read from Stripe: an older read (a slow
    # webhook) never overwrites a newer one, whatever order events arrive in.
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class EventOutcome(StrEnum):
    HANDLED = "handled"  # applied (or about no customer of ours): a redelivery is a duplicate
    UNMATCHED = "unmatched"  # would move credits but matches no user, or its object is gone:
    # kept for the operator (`billing unmatched`); a redelivery or replay tries again


class StripeEvent(Base):
    """Every Stripe event received that we act on, recorded in the transaction that
    applied it; unmatched ones stay open to redelivery, replay and `billing sync`."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # evt_…
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = created_at_column()
    outcome: Mapped[EventOutcome] = mapped_column(
        EnumString(EventOutcome, 16),
        default=EventOutcome.HANDLED,
        server_default=EventOutcome.HANDLED.value,
    )
    # For unmatched events: why, the Stripe customer (what `billing sync` looks for) and
    # the object the event names. Stripe ids only, nothing about the person.
    reason: Mapped[str | None] = mapped_column(String(100))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    object_id: Mapped[str | None] = mapped_column(String(255))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AttemptStatus(StrEnum):
    PENDING = "pending"  # started; Stripe has not answered (or we did not hear it)
    PAID = "paid"  # Stripe took the payment; credits come with its signed webhook
    SUCCEEDED = "succeeded"  # credited (by `payment_intent.succeeded`)
    FAILED = "failed"  # declined, authentication required, no card...: auto top-up is off


class AutoTopUpAttempt(Base):
    """One off-session payment for an auto top-up. Its Stripe idempotency key is
    `wfg-auto-top-up-<user id>-<sequence>`: a retry of the same attempt can never charge
    twice. Stripe ids and codes only, nothing about the card."""

    __tablename__ = "auto_top_up_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    amount_units: Mapped[int] = mapped_column(BigInteger, info=credit_units_column("amount"))
    price_minor: Mapped[int] = mapped_column(BigInteger)  # charged, in the currency's minor unit
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # an AttemptStatus
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Set when credited or failed; until then the attempt is in flight."""

    __table_args__ = (
        UniqueConstraint("user_id", "sequence", name="uq_auto_top_up_attempts_sequence"),
        Index(
            "uq_auto_top_up_attempts_in_flight",
            "user_id",
            unique=True,
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
    )

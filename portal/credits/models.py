"""Money tables. Amounts are integers in ledger units (`portal.credits.units`).

`credit_accounts.balance` is a running total maintained in the same transaction as every
ledger insert (so the 402 check is one atomic UPDATE); the ledger is the truth and
`balance == sum(ledger_entries.amount)` is checked by tests and `credits balance`.

`balance_alerts` is an outbox: the settlement that takes a balance below a threshold (the
operator's low-balance one, or the person's auto top-up one) writes a row in its own
statement; the portal takes it, sends the email or starts the top-up, and deletes it
(`portal.credits.alerts`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from portal.credits.units import credit_units_column
from portal.db.base import Base, UTCDateTime, utcnow
from portal.db.columns import BigId, created_at_column

__all__ = [
    "AutoTopUp",
    "BalanceAlert",
    "CauseType",
    "CreditAccount",
    "EntryKind",
    "LedgerEntry",
    "Reservation",
]


class CauseType:
    USAGE = "usage"  # cause_id = LiteLLM call id
    STRIPE_EVENT = "stripe_event"  # cause_id = Stripe event id
    ADMIN = "admin"  # cause_id = generated id of the admin action
    RETENTION = "retention"  # cause_id = generated id of a balance carried forward


class EntryKind:
    DEBIT = "debit"
    GRANT = "grant"
    PURCHASE = "purchase"
    SUBSCRIPTION = "subscription"
    CLAWBACK = "clawback"
    ADJUSTMENT = "adjustment"
    CARRY_FORWARD = "carry_forward"  # the sum of entries past the legal window (retention)


class CreditAccount(Base):
    __tablename__ = "credit_accounts"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0, info=credit_units_column("balance"))
    reserved: Mapped[int] = mapped_column(
        BigInteger, default=0, info=credit_units_column("reserved")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (CheckConstraint("reserved >= 0", name="reserved_not_negative"),)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # + grant, - debit
    amount: Mapped[int] = mapped_column(BigInteger, info=credit_units_column("amount"))
    kind: Mapped[str] = mapped_column(String(32))
    cause_type: Mapped[str] = mapped_column(String(32))
    cause_id: Mapped[str] = mapped_column(String(255))
    usage_record_id: Mapped[int | None] = mapped_column(
        ForeignKey("usage_records.id", ondelete="SET NULL")
    )
    note: Mapped[str | None] = mapped_column(String(500))  # operator's reason, never content
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (UniqueConstraint("cause_type", "cause_id", name="uq_ledger_cause"),)


class Reservation(Base):
    """Credits held for a call in flight; released when the call settles or expires."""

    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The token whose `held_units` counts this hold (`portal.tokens.spending`); NULL for a
    # hold taken without one.
    token_id: Mapped[str | None] = mapped_column(
        ForeignKey("gateway_tokens.id", ondelete="SET NULL")
    )
    amount: Mapped[int] = mapped_column(BigInteger, info=credit_units_column("amount"))
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BalanceAlert(Base):
    """Work for the portal after a balance moved: written by the settlement that crossed a
    threshold (in the same statement or transaction, so it survives a crash of the gateway
    the moment after), or by the portal itself (auto top-up switched on, a top-up granted);
    deleted by the portal once handled. Several rows for one user are fine: each handler
    re-reads the current state."""

    __tablename__ = "balance_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    low_balance: Mapped[bool] = mapped_column(Boolean)
    """The balance went below the operator's low-balance threshold: one email."""
    top_up: Mapped[bool] = mapped_column(Boolean)
    """The balance went below the person's auto top-up threshold: start one."""
    balance: Mapped[int] = mapped_column(BigInteger, info=credit_units_column("balance"))
    """The balance right after the move."""
    created_at: Mapped[datetime] = created_at_column()


class AutoTopUp(Base):
    """A person's auto top-up: when a settlement takes the balance below `threshold`,
    `amount` credits are bought with the card saved at Stripe. Turned off by us when a
    payment fails (`off_reason`), until the person turns it on again."""

    __tablename__ = "auto_top_ups"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold_units: Mapped[int] = mapped_column(BigInteger, info=credit_units_column("threshold"))
    amount_units: Mapped[int] = mapped_column(BigInteger, info=credit_units_column("amount"))
    off_reason: Mapped[str | None] = mapped_column(String(64))
    """Why we turned it off (Stripe's error code, `no_saved_card`); None when the person did."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

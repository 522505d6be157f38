from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, UTCDateTime, utcnow
from portal.db.columns import EnumString, created_at_column, new_id

__all__ = ["AccountLink", "AccountStatus", "LinkPurpose", "ThrottleCounter", "User"]


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2id
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[AccountStatus] = mapped_column(
        EnumString(AccountStatus, 16), default=AccountStatus.ACTIVE
    )
    plan: Mapped[str] = mapped_column(String(64), default="free")  # set by billing
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def is_verified(self) -> bool:
        return self.email_verified_at is not None


class LinkPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"  # also confirms a changed address (new_email set)
    RESET_PASSWORD = "reset_password"


class AccountLink(Base):
    """A one-time link sent by email: random, stored hashed, expiring, single-use."""

    __tablename__ = "account_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[LinkPurpose] = mapped_column(EnumString(LinkPurpose, 32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    new_email: Mapped[str | None] = mapped_column(String(320))  # for an email change
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ThrottleCounter(Base):
    """Hits counted against one abuse limit (`accounts.throttle`): sign-in failures of an
    (account, client) pair or of a client, password re-entries, mail to an address.

    Keyed by a digest (of the normalised email whether or not an account has it, so a
    limit reveals nothing, and of the client address); `subject_hash` names the account
    a row concerns, so export and deletion find it. Rows older than their window are
    pruned by retention."""

    __tablename__ = "throttle_counters"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex
    subject_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    hits: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    blocked_until: Mapped[datetime] = mapped_column(UTCDateTime())

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, UTCDateTime, utcnow
from portal.db.columns import BigId

__all__ = ["EmailKind", "EmailLogEntry"]


class EmailKind:
    VERIFY_EMAIL = "verify_email"
    SIGN_UP_EXISTING = "sign_up_existing"
    PASSWORD_RESET = "password_reset"
    PASSWORD_CHANGED = "password_changed"
    EMAIL_CHANGE = "email_change"
    EMAIL_CHANGED = "email_changed"
    TOKEN_CREATED = "token_created"
    ACCOUNT_DELETED = "account_deleted"
    LOW_BALANCE = "low_balance"
    AUTO_TOP_UP_FAILED = "auto_top_up_failed"


class EmailLogEntry(Base):
    """That a message of some kind went to a user: no address, subject or body."""

    __tablename__ = "email_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

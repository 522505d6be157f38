from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, UTCDateTime
from portal.db.columns import created_at_column, credit_units_column, new_id

__all__ = ["ConnectCode"]


class ConnectCode(Base):
    """One approval of an app: a one-time code bound to the app's PKCE challenge and
    callback. Only the code's SHA-256 is stored; `token_id` is the token it became."""

    __tablename__ = "connect_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    code_challenge: Mapped[str] = mapped_column(String(128))  # S256 of the app's verifier
    callback_url: Mapped[str] = mapped_column(String(2000))
    app_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    token_id: Mapped[str | None] = mapped_column(
        ForeignKey("gateway_tokens.id", ondelete="SET NULL"), index=True
    )
    # The spending limit the person chose on the consent page, for the token (none: NULL).
    limit_units: Mapped[int | None] = mapped_column(BigInteger, info=credit_units_column("limit"))
    limit_reset: Mapped[str | None] = mapped_column(String(16))

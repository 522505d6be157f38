from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, UTCDateTime
from portal.db.columns import created_at_column, credit_units_column, new_id

__all__ = ["GatewayToken"]


def _units(base_name: str) -> Mapped[int]:
    return mapped_column(
        BigInteger, default=0, server_default="0", info=credit_units_column(base_name)
    )


class GatewayToken(Base):
    """A gateway token, and its spending limit with what it has used
    (`portal.tokens.spending` says how the counters are kept)."""

    __tablename__ = "gateway_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists; not enough to use
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_at: Mapped[datetime] = created_at_column()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The spending limit (set by people: `service`); none when NULL.
    limit_units: Mapped[int | None] = mapped_column(BigInteger, info=credit_units_column("limit"))
    limit_reset: Mapped[str | None] = mapped_column(String(16))  # daily|weekly|monthly; NULL never
    # What it used (kept by the money statements: `spending`).
    held_units: Mapped[int] = _units("held")  # holds of its calls in flight
    spent_day: Mapped[int] = _units("spent_day")  # settled in the day of `spent_at`
    spent_week: Mapped[int] = _units("spent_week")  # … in its week (from Monday)
    spent_month: Mapped[int] = _units("spent_month")  # … in its month
    spent_total: Mapped[int] = _units("spent_total")  # … since the token was made
    spent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the last settlement

    __table_args__ = (
        CheckConstraint("limit_units IS NULL OR limit_units > 0", name="limit_positive"),
        CheckConstraint(
            "limit_reset IS NULL OR limit_reset IN ('daily', 'weekly', 'monthly')",
            name="limit_reset_known",
        ),
    )

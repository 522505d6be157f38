"""One row per gateway call. Deliberately no column can hold prompt or completion
text: counts, a model name, timestamps, money, and an error *class* name."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.credits.units import credit_units_column
from portal.db.base import Base, UTCDateTime
from portal.db.columns import BigId, EnumString, created_at_column

__all__ = ["CallStatus", "UsageRecord"]


class CallStatus(StrEnum):
    SUCCESS = "success"
    INCOMPLETE = "incomplete"  # a stream that ended early, billed for what was delivered
    FAILED = "failed"


class UsageRecord(Base):
    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)  # LiteLLM's litellm_call_id
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    token_id: Mapped[str | None] = mapped_column(
        ForeignKey("gateway_tokens.id", ondelete="SET NULL")
    )
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[CallStatus] = mapped_column(EnumString(CallStatus, 16))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    upstream_cost_nano_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    credits: Mapped[int] = mapped_column(  # ledger units charged
        BigInteger, default=0, info=credit_units_column("charged")
    )
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(100))  # class name only
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_at_column()

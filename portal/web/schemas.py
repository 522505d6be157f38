"""JSON shapes of the API. Input (`XCreate`) and output (`XPublic`) are separate models,
so a hash or secret column can never slip into a response."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, computed_field

from portal.credits.units import format_units

__all__ = [
    "BalancePublic",
    "DailyUsagePublic",
    "LedgerEntryPublic",
    "MePublic",
    "StoredFieldsPublic",
    "TokenCreate",
    "TokenCreatedPublic",
    "TokenLimitSet",
    "TokenPublic",
    "UsagePage",
    "UsageRecordPublic",
]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


TokenName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_nul),
]


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MePublic(_Public):
    id: str
    email: str
    name: str
    email_verified: bool
    plan: str
    created_at: datetime
    csrf_token: str
    """Send it back as the `X-CSRF-Token` header on POST and DELETE requests."""


class TokenLimitSet(BaseModel):
    """A token's spending limit: credits as a decimal string (`null` or `""`: no limit)
    and when it resets (`daily`, `weekly`, `monthly`; `null`/`none`: never)."""

    model_config = ConfigDict(extra="forbid")
    limit: str | None = None
    reset: str | None = None


class TokenCreate(TokenLimitSet):
    name: TokenName


class TokenPublic(_Public):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    limit_units: int | None = None
    limit_reset: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def limit(self) -> str | None:
        """The spending limit in credits, a decimal string; null without one."""
        return None if self.limit_units is None else format_units(self.limit_units)


class TokenCreatedPublic(BaseModel):
    token: TokenPublic
    secret: str
    """The token itself. Shown this once; only its hash is kept."""
    base_url: str
    """Paste into the desktop app (or any OpenAI SDK) as the base URL."""


class BalancePublic(BaseModel):
    balance_units: int
    available_units: int
    balance_credits: str
    available_credits: str
    units_per_credit: int


class LedgerEntryPublic(BaseModel):
    id: int
    amount_units: int
    """Integer ledger units (`units_per_credit` per credit): + grant, - debit."""
    amount_credits: str
    """The same amount in credits, as a decimal string ("-0.000042")."""
    kind: str
    cause_type: str
    created_at: datetime
    note: str | None

    @classmethod
    def of(cls, entry: Any) -> LedgerEntryPublic:
        return cls(
            id=entry.id,
            amount_units=entry.amount,
            amount_credits=format_units(entry.amount),
            kind=entry.kind,
            cause_type=entry.cause_type,
            created_at=entry.created_at,
            note=entry.note,
        )


class UsageRecordPublic(BaseModel):
    call_id: str
    model: str
    status: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    charged_units: int
    """What the call cost, in integer ledger units."""
    charged_credits: str
    """The same in credits, as a decimal string."""
    started_at: datetime
    ended_at: datetime

    @classmethod
    def of(cls, record: Any) -> UsageRecordPublic:
        return cls(
            call_id=record.call_id,
            model=record.model,
            status=record.status,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cached_tokens=record.cached_tokens,
            reasoning_tokens=record.reasoning_tokens,
            charged_units=record.credits,
            charged_credits=format_units(record.credits),
            started_at=record.started_at,
            ended_at=record.ended_at,
        )


class UsagePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[UsageRecordPublic]


class DailyUsagePublic(BaseModel):
    day: date
    requests: int
    tokens: int
    charged_units: int
    charged_credits: str

    @classmethod
    def of(cls, day: Any) -> DailyUsagePublic:
        return cls(
            day=day.day,
            requests=day.requests,
            tokens=day.tokens,
            charged_units=day.credits,
            charged_credits=format_units(day.credits),
        )


class StoredFieldsPublic(BaseModel):
    fields: dict[str, Any] | None
    """Every stored column of your latest usage record, or null if you have none; ledger
    units read "42000 units (0.000042 credits)"."""
    not_stored: str

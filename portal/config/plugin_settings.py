"""The `workforce_gateway:` section of config.yaml. Unknown keys are errors, so a typo
never silently falls back to a default."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CreditSettings", "LimitSettings", "PluginSettings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreditSettings(_Strict):
    usd_per_credit: Decimal = Field(default=Decimal("1"), gt=0)
    """What one credit is worth in US dollars of upstream cost (before markup)."""
    markup: Decimal = Field(default=Decimal("1"), gt=0)
    """Multiplier applied to the upstream cost when debiting."""
    default_max_tokens: int = Field(default=4096, gt=0)
    """Output tokens reserved for a request that does not set max_tokens."""
    reservation_ttl_seconds: int = Field(default=900, gt=0)
    """A reservation not settled by then (crashed worker) is released by the next reserve."""
    low_balance_credits: Decimal = Field(default=Decimal("1"), ge=0)


class LimitSettings(_Strict):
    max_request_tokens: int = Field(default=200_000, gt=0)
    """Refuse a request whose max_tokens exceeds this (bounds a single reservation)."""


class PluginSettings(_Strict):
    credits: CreditSettings = CreditSettings()
    limits: LimitSettings = LimitSettings()

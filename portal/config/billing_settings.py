"""What can be bought: the `workforce_gateway.billing` section of config.yaml (validated
here, with the rest of the file; `portal.billing` sells it).

    billing:
      plans:                        # subscriptions; credits granted per paid period
        pro: {name: Pro, stripe_price_id: price_..., credits_per_period: 50,
              trial_credits: 0, free_period_credits: 0}   # optional, default 0
      packs:                        # one-time top-ups
        small: {name: 10 credits, stripe_price_id: price_..., credits: 10}
      auto_top_up:                  # off unless enabled; bounds on what a person may choose
        {enabled: true, currency: usd, minor_units_per_credit: 100,
         min_threshold_credits: 1, max_threshold_credits: 1000,
         min_amount_credits: 5, max_amount_credits: 500, max_per_day: 3}

Ids (`pro`, `small`) are ours: a plan id is what `users.plan` holds while the subscription
is live (per-plan rate limits read it), so `free` is reserved. Every Stripe price id may
appear once, because fulfilment maps the price that was paid back to what it buys.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "CREDIT_DECIMAL_PLACES",
    "FREE_PLAN",
    "AutoTopUpSettings",
    "BillingSettings",
    "PackSettings",
    "PlanSettings",
]

FREE_PLAN = "free"
CREDIT_DECIMAL_PLACES = 9
"""A credit is 10^9 ledger units (`portal.credits.units`, which a test keeps in step)."""
_MAX_CREDITS = Decimal(2**63 - 1).scaleb(-CREDIT_DECIMAL_PLACES)  # the ledger's BIGINT


def _units(credits: Decimal) -> int:
    """Validated credits as ledger units (exact: validation allows 9 decimal places)."""
    return int(credits.scaleb(CREDIT_DECIMAL_PLACES))


CatalogId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PriceId = Annotated[str, StringConstraints(pattern=r"^price_[A-Za-z0-9_]{1,200}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _in_ledger_range(value: Decimal) -> Decimal:
    """At most 9 decimal places and within the ledger's range, so it converts to units
    exactly."""
    if not value.is_finite():
        raise ValueError("must be a number of credits")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -CREDIT_DECIMAL_PLACES:
        raise ValueError(f"credits have at most {CREDIT_DECIMAL_PLACES} decimal places")
    if abs(value) > _MAX_CREDITS:
        raise ValueError("too many credits")
    return value


def _credits(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be a positive number of credits")
    return _in_ledger_range(value)


def _optional_credits(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must be zero or a positive number of credits")
    return _in_ledger_range(value)


class PlanSettings(_Strict):
    name: str = Field(min_length=1, max_length=100)
    stripe_price_id: PriceId
    """A recurring Stripe price (monthly, yearly...)."""
    credits_per_period: Decimal
    """Granted when a period's invoice is paid with money (its total after discounts > 0)."""
    trial_credits: Decimal = Decimal(0)
    """Granted for a $0 invoice without a discount: a trial period. Default: nothing."""
    free_period_credits: Decimal = Decimal(0)
    """Granted for a $0 invoice that a coupon made free (100% off). Default: nothing."""

    _check_credits = field_validator("credits_per_period")(_credits)
    _check_optional = field_validator("trial_credits", "free_period_credits")(_optional_credits)

    @property
    def credits_units(self) -> int:
        return _units(self.credits_per_period)

    @property
    def trial_credits_units(self) -> int:
        return _units(self.trial_credits)

    @property
    def free_period_credits_units(self) -> int:
        return _units(self.free_period_credits)


class PackSettings(_Strict):
    name: str = Field(min_length=1, max_length=100)
    stripe_price_id: PriceId
    """A one-time Stripe price."""
    credits: Decimal
    """Granted once the payment has succeeded."""

    _check_credits = field_validator("credits")(_credits)

    @property
    def credits_units(self) -> int:
        return _units(self.credits)


class AutoTopUpSettings(_Strict):
    """Auto top-up (`portal.billing.auto_top_up`): what a person may choose, and what a
    credit costs when bought this way. Off by default: the operator names the price."""

    enabled: bool = False
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")
    minor_units_per_credit: int = Field(default=100, gt=0)
    """What one credit costs, in the currency's smallest unit (100 = $1.00 a credit)."""
    min_threshold_credits: int = Field(default=1, ge=1)
    max_threshold_credits: int = Field(default=1000, ge=1)
    min_amount_credits: int = Field(default=5, ge=1)
    max_amount_credits: int = Field(default=500, ge=1)
    """Whole credits: a top-up is always a whole number of minor units."""
    max_per_day: int = Field(default=3, ge=1)
    """Top-ups started per account in any 24 hours, whatever their outcome."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoTopUpSettings:
        if self.min_threshold_credits > self.max_threshold_credits:
            raise ValueError("min_threshold_credits is above max_threshold_credits")
        if self.min_amount_credits > self.max_amount_credits:
            raise ValueError("min_amount_credits is above max_amount_credits")
        if self.max_threshold_credits * 10**CREDIT_DECIMAL_PLACES > 2**63 - 1:
            raise ValueError("max_threshold_credits: too many credits")
        if self.max_amount_credits * self.minor_units_per_credit > 99_999_999:
            raise ValueError("max_amount_credits costs more than Stripe takes in one payment")
        return self


class BillingSettings(_Strict):
    plans: dict[CatalogId, PlanSettings] = {}
    packs: dict[CatalogId, PackSettings] = {}
    auto_top_up: AutoTopUpSettings = AutoTopUpSettings()
    how_to_get_credits: str = Field(default="", max_length=2000)
    """Shown to people where credits cannot be bought here (no Stripe): how to get them on
    this server, in the operator's words (plain text; line breaks are kept)."""

    @model_validator(mode="after")
    def _prices_unique(self) -> BillingSettings:
        if FREE_PLAN in self.plans:
            raise ValueError(f"plans.{FREE_PLAN}: the id '{FREE_PLAN}' is reserved for no plan")
        seen: dict[str, str] = {}
        entries: list[tuple[str, PlanSettings | PackSettings]]
        entries = [(f"plans.{k}", v) for k, v in self.plans.items()]
        entries += [(f"packs.{k}", v) for k, v in self.packs.items()]
        for where, item in entries:
            if item.stripe_price_id in seen:
                raise ValueError(
                    f"{where}.stripe_price_id: {item.stripe_price_id} is already used by "
                    f"{seen[item.stripe_price_id]}"
                )
            seen[item.stripe_price_id] = where
        return self

    def plan_for_price(self, price_id: str | None) -> str | None:
        """Our plan id for a Stripe price, or None when the price is not a plan of ours."""
        return next((k for k, p in self.plans.items() if p.stripe_price_id == price_id), None)

    def pack_for_price(self, price_id: str | None) -> str | None:
        return next((k for k, p in self.packs.items() if p.stripe_price_id == price_id), None)

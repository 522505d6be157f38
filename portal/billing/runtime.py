"""The process's billing context: Stripe client, catalog, webhook secret, public URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from portal.billing.stripe_gateway import StripeGateway
from portal.config.billing_settings import BillingSettings
from portal.settings import Settings, get_settings

__all__ = ["Billing", "BillingNotConfigured", "build_billing", "get_billing"]


class BillingNotConfigured(RuntimeError):
    """STRIPE_SECRET_KEY (or STRIPE_WEBHOOK_SECRET for webhooks) is not set."""


@dataclass
class Billing:
    catalog: BillingSettings
    public_url: str
    stripe_gateway: StripeGateway | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.stripe_gateway is not None

    @property
    def stripe(self) -> StripeGateway:
        if self.stripe_gateway is None:
            raise BillingNotConfigured("billing is not configured (STRIPE_SECRET_KEY is unset)")
        return self.stripe_gateway

    async def aclose(self) -> None:
        if self.stripe_gateway is not None:
            await self.stripe_gateway.aclose()


def build_billing(settings: Settings, catalog: BillingSettings | None = None) -> Billing:
    if catalog is None:
        from portal.config import load_plugin_settings

        catalog = load_plugin_settings(settings.config_path).billing
    gateway = (
        StripeGateway(settings.stripe_secret_key, api_base=settings.stripe_api_base)
        if settings.stripe_secret_key
        else None
    )
    return Billing(
        catalog=catalog,
        public_url=settings.portal_public_url.rstrip("/"),
        stripe_gateway=gateway,
        webhook_secret=settings.stripe_webhook_secret,
    )


@cache
def get_billing() -> Billing:
    """The portal process's context (one event loop, one HTTP connection pool)."""
    return build_billing(get_settings())

"""The Stripe calls billing makes, on the official SDK's `StripeClient` (async, httpx).

Everything returned is a plain `dict` (`StripeObject.to_dict()`), so the domain code reads
Stripe's wire shapes and tests can hand it the same shapes. `api_base` points the client
somewhere other than api.stripe.com (the fake in tests, `STRIPE_API_BASE`).
"""

from __future__ import annotations

from typing import Any

import stripe
from stripe.params.checkout import SessionCreateParams as CheckoutParams

__all__ = ["CheckoutParams", "StripeGateway"]

Obj = dict[str, Any]


class StripeGateway:
    def __init__(
        self, secret_key: str, *, api_base: str | None = None, max_network_retries: int = 2
    ) -> None:
        self.api_base = api_base
        bases: dict[str, str] = {}
        if api_base:
            base = api_base.rstrip("/")
            bases = {"api": base, "files": base, "connect": base, "meter_events": base}
        self._http = stripe.HTTPXClient()
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses=bases,  # type: ignore[arg-type]
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # unannotated in stripe

    # -------------------------------------------------------------------- events
    async def retrieve_event(self, event_id: str) -> Obj:
        return (await self.client.v1.events.retrieve_async(event_id)).to_dict()

    # ----------------------------------------------------------------- customers
    async def create_customer(self, *, email: str, user_id: str) -> Obj:
        customer = await self.client.v1.customers.create_async(
            {"email": email, "metadata": {"user_id": user_id}},
            # A retry (or a double click) within 24 h gets the same customer back.
            {"idempotency_key": f"wfg-customer-{user_id}"},
        )
        return customer.to_dict()

    async def retrieve_customer(self, customer_id: str) -> Obj:
        customer = await self.client.v1.customers.retrieve_async(
            customer_id, {"expand": ["invoice_settings.default_payment_method"]}
        )
        return customer.to_dict()

    async def find_customer_ids(self, user_id: str) -> list[str]:
        """Customers created for this user (metadata.user_id), newest first."""
        result = await self.client.v1.customers.search_async(
            {"query": f"metadata['user_id']:'{user_id}'", "limit": 10}
        )
        return [c["id"] for c in result.to_dict()["data"]]

    # ------------------------------------------------------------------ checkout
    async def create_checkout_session(self, params: CheckoutParams) -> Obj:
        return (await self.client.v1.checkout.sessions.create_async(params)).to_dict()

    async def retrieve_checkout_session(self, session_id: str) -> Obj:
        session = await self.client.v1.checkout.sessions.retrieve_async(
            session_id, {"expand": ["line_items", "payment_intent.payment_method"]}
        )
        return session.to_dict()

    async def checkout_session_ids(
        self, *, customer: str | None = None, payment_intent: str | None = None
    ) -> list[str]:
        params: dict[str, Any] = {"limit": 100}
        if customer:
            params["customer"] = customer
            params["status"] = "complete"
        if payment_intent:
            params["payment_intent"] = payment_intent
        page = await self.client.v1.checkout.sessions.list_async(params)  # type: ignore[arg-type]
        return [s.id async for s in page.auto_paging_iter()]

    async def create_portal_session(self, *, customer: str, return_url: str) -> Obj:
        session = await self.client.v1.billing_portal.sessions.create_async(
            {"customer": customer, "return_url": return_url}
        )
        return session.to_dict()

    # ------------------------------------------------------- off-session payments
    async def saved_card(self, customer_id: str) -> str | None:
        """The card to charge without the person: the customer's default (set in the
        Billing Portal), else the newest card saved to the customer (a Checkout with
        `setup_future_usage=off_session`). None when there is none."""
        customer = await self.retrieve_customer(customer_id)
        if customer.get("deleted"):
            return None
        default = (customer.get("invoice_settings") or {}).get("default_payment_method")
        if isinstance(default, dict) and default.get("type") == "card":
            return str(default["id"])
        page = await self.client.v1.payment_methods.list_async(
            {"customer": customer_id, "type": "card", "limit": 10}
        )
        cards = page.to_dict()["data"]
        return str(cards[0]["id"]) if cards else None

    async def charge_off_session(
        self,
        *,
        customer: str,
        payment_method: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        description: str,
        idempotency_key: str,
    ) -> Obj:
        """A PaymentIntent created and confirmed without the person (off-session). A
        decline or a bank asking for authentication raises `stripe.CardError`; the same
        `idempotency_key` again returns the first answer (never a second charge)."""
        intent = await self.client.v1.payment_intents.create_async(
            {
                "amount": amount,
                "currency": currency,
                "customer": customer,
                "payment_method": payment_method,
                "off_session": True,
                "confirm": True,
                "metadata": metadata,
                "description": description,
            },
            {"idempotency_key": idempotency_key},
        )
        return intent.to_dict()

    async def retrieve_payment_intent(self, payment_intent_id: str) -> Obj:
        return (await self.client.v1.payment_intents.retrieve_async(payment_intent_id)).to_dict()

    # ------------------------------------------------------------------ invoices
    async def retrieve_invoice(self, invoice_id: str) -> Obj:
        return (await self.client.v1.invoices.retrieve_async(invoice_id)).to_dict()

    async def paid_invoices(self, customer: str) -> list[Obj]:
        page = await self.client.v1.invoices.list_async(
            {"customer": customer, "status": "paid", "limit": 100}
        )
        return [i.to_dict() async for i in page.auto_paging_iter()]

    async def invoice_id_for_payment_intent(self, payment_intent: str) -> str | None:
        page = await self.client.v1.invoice_payments.list_async(
            {"payment": {"type": "payment_intent", "payment_intent": payment_intent}, "limit": 10}
        )
        rows = page.to_dict()["data"]
        return rows[0]["invoice"] if rows else None

    # ------------------------------------------------------------- subscriptions
    async def subscriptions(self, customer: str) -> list[Obj]:
        """All of the customer's subscriptions, ended ones included."""
        page = await self.client.v1.subscriptions.list_async(
            {
                "customer": customer,
                "status": "all",
                "limit": 100,
                "expand": ["data.default_payment_method"],
            }
        )
        return [s.to_dict() async for s in page.auto_paging_iter()]

    async def cancel_subscription(self, subscription_id: str) -> Obj:
        return (await self.client.v1.subscriptions.cancel_async(subscription_id)).to_dict()

    # ------------------------------------------------------------------- charges
    async def retrieve_charge(self, charge_id: str) -> Obj:
        return (await self.client.v1.charges.retrieve_async(charge_id)).to_dict()

    async def charges(self, customer: str) -> list[Obj]:
        page = await self.client.v1.charges.list_async({"customer": customer, "limit": 100})
        return [c.to_dict() async for c in page.auto_paging_iter()]

    # ------------------------------------------------------------------ disputes
    async def retrieve_dispute(self, dispute_id: str) -> Obj:
        return (await self.client.v1.disputes.retrieve_async(dispute_id)).to_dict()

    async def disputes(self, *, charge: str) -> list[Obj]:
        page = await self.client.v1.disputes.list_async({"charge": charge, "limit": 100})
        return [d.to_dict() async for d in page.auto_paging_iter()]

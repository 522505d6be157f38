"""A fake of Stripe's REST API on loopback, for the real ``stripe`` SDK (16.x), covering
what billing uses (``portal/billing/stripe_gateway.py``) and what its tests make Stripe do.

It speaks Stripe's wire format: form-encoded bodies with bracketed keys
(``line_items[0][price]``, ``metadata[user_id]``, ``expand[0]``), Bearer auth with one
secret key, JSON objects with ``id``/``object``/``created``/``livemode``, list and search
objects, ``{"error": {...}}`` bodies with Stripe's status codes, ``Request-Id`` and
idempotent replays of POSTs. Webhook events are signed exactly as Stripe signs them.

    fake = FakeStripe().start()
    client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url})

What a buyer or Stripe does is driven from the test (``complete_checkout``,
``renew_subscription``, ``refund_charge``, ``dispute_charge`` ...); each returns the
events it made, in order, and POSTs them to ``webhook_url`` when ``auto_deliver`` is on.

Objects carry the fields billing reads plus those that make them recognisable; Stripe's
long tail of null fields is left out (the SDK does not need it). One module per resource:

- ``customers``: create (idempotent), retrieve, search by metadata, update
- ``checkout``: sessions (create, retrieve, list) and their completion
- ``billing_portal``: portal sessions and the hosted portal page
- ``subscriptions``: list, cancel; renewals, failures, changes, coupons
- ``invoices``: retrieve, list, invoice payments
- ``payments``: payment methods, PaymentIntents, charges (retrieve, list), refunds
- ``disputes``: retrieve, list; opened, escalated, closed
- ``webhooks``: signing and delivery; ``app``: the REST conventions and the pay page
- ``state``, ``prices``, ``wire``: the objects, the catalog, the wire format
"""

from __future__ import annotations

from .fake import FakeStripe
from .webhooks import sign_payload
from .wire import API_VERSION, FakeStripeError, parse_stripe_form

__all__ = ["API_VERSION", "FakeStripe", "FakeStripeError", "parse_stripe_form", "sign_payload"]

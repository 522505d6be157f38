"""Billing with Stripe: plans and credit packs bought on Stripe's hosted pages.

Where things are:

- what can be bought: `portal.config.billing_settings` (config.yaml `workforce_gateway.billing`)
- `models.py`         the two tables: billing_accounts, stripe_events
- `stripe_gateway.py` the Stripe API calls (official SDK, async)
- `reads.py`          Stripe objects -> what they mean for us (purchases, reversals, state)
- `service.py`        applying that in a transaction: grants, claw-backs, plan and status;
                      `cancel_billing_for_user` for account deletion
- `flows.py`          Stripe call + transaction: start Checkout, Billing Portal, success
                      redirect, sync
- `webhooks.py`       signature check and one handler per event type
- `runtime.py`        the process's Stripe client and catalog
- `views.py`          Billing page, Checkout, Billing Portal, `POST /stripe/webhook`

Every payment becomes credits exactly once: grants are keyed by the thing paid (Checkout
Session or invoice id), not by who noticed the payment first.
"""

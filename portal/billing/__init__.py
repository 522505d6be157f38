"""Billing with Stripe: plans and credit packs bought on Stripe's hosted pages.

Where things are:

- `models.py`         billing_accounts, stripe_events, auto_top_up_attempts
- `stripe_gateway.py` the Stripe API calls (official SDK, async)
- `reads.py`          Stripe objects -> what they mean for us (purchases, reversals, state)
- `service.py`        applying that in a transaction: grants, claw-backs, plan and status
- `flows.py`          Stripe call, then transaction: start Checkout, Billing Portal,
                      success redirect, sync; `cancel_subscriptions` for account deletion
- `webhooks.py`       signature check and one handler per event type
- `auto_top_up.py`    auto top-up attempts: when one may start, what Stripe answered
- `auto_top_up_flows.py` the off-session charge of the saved card, outside transactions
- `runtime.py`        the process's Stripe client and catalog

What can be bought is config.yaml's `workforce_gateway.billing`, validated by
`portal.config.billing_settings`; the pages and `POST /stripe/webhook` are
`portal.web.routes.billing`.

Every payment becomes credits exactly once: grants are keyed by the thing paid (Checkout
Session or invoice id), not by who noticed the payment first.
"""

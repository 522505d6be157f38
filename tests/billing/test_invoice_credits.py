"""What a subscription invoice is worth: a period paid with money grants the plan's
credits; a $0 trial invoice grants the plan's `trial_credits`, a period a 100% coupon made
free grants its `free_period_credits` (both 0 unless configured); a partial coupon still
collects money, so the period's credits are granted.

The test catalog (conftest): basic = 100 credits a period, trial_credits 5; pro = 500
credits a period, free_period_credits 20, no trial credits.
"""

from __future__ import annotations

from portal.billing import flows
from portal.billing.runtime import Billing
from portal.db import Database
from tests.billing.conftest import UNITS, Buyer, MakeBuyer, books, event_of
from tests.fakes.stripe_api import FakeStripe


async def start_trial_checkout(
    billing: Billing, db: Database, buyer: Buyer, plan: str, *, days: int
) -> str:
    """A Checkout for a plan with a free trial, as a Payment Link or the Dashboard would
    make it for the buyer's customer (the Billing page itself offers no trial)."""
    customer_id = await flows.ensure_customer(db, billing, user_id=buyer.user_id, email=buyer.email)
    params = flows.checkout_params(
        billing, user_id=buyer.user_id, customer_id=customer_id, kind="plan", item_id=plan
    )
    params["subscription_data"]["trial_period_days"] = days
    return (await billing.stripe.create_checkout_session(params))["id"]


async def test_a_trial_grants_the_trial_credits_not_a_period(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_trial_checkout(billing, db, buyer, "basic", days=14)
    events = stripe_fake.complete_checkout(session_id)
    trial_invoice = event_of(events, "invoice.paid")["data"]["object"]
    assert (trial_invoice["total"], trial_invoice["amount_paid"]) == (0, 0)

    after = await books(db, buyer.user_id)
    assert (after.account.status, after.plan) == ("trialing", "basic")
    assert after.balance == after.ledger_sum == 5 * UNITS  # trial_credits, not 100
    [grant] = after.entries
    assert grant.cause_id == trial_invoice["id"] and "(trial)" in grant.note

    # the trial ends and the first period is paid: its 100 credits
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]
    renewal = stripe_fake.renew_subscription(sub_id)
    assert event_of(renewal, "invoice.paid")["data"]["object"]["amount_paid"] == 1000
    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 105 * UNITS
    assert (after.account.status, after.plan) == ("active", "basic")


async def test_cancelling_in_the_trial_keeps_only_the_trial_credits(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_trial_checkout(billing, db, buyer, "pro", days=7)
    events = stripe_fake.complete_checkout(session_id)
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]
    stripe_fake.cancel_subscription(sub_id)

    after = await books(db, buyer.user_id)
    assert (after.account.status, after.plan) == ("canceled", "free")
    assert after.balance == after.ledger_sum == 0  # pro has no trial credits
    assert after.entries == []


async def test_a_period_made_free_by_a_coupon_grants_only_what_the_plan_allows(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    for plan, per_period, free_period in (("basic", 100, 0), ("pro", 500, 20)):
        buyer = await make_buyer()
        customer_id = await flows.ensure_customer(
            db, billing, user_id=buyer.user_id, email=buyer.email
        )
        params = flows.checkout_params(
            billing, user_id=buyer.user_id, customer_id=customer_id, kind="plan", item_id=plan
        )
        session_id = (await billing.stripe.create_checkout_session(params))["id"]
        events = stripe_fake.complete_checkout(session_id)
        sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]
        assert (await books(db, buyer.user_id)).balance == per_period * UNITS

        stripe_fake.apply_coupon(sub_id, stripe_fake.create_coupon(percent_off=100))
        renewal = stripe_fake.renew_subscription(sub_id)
        free = event_of(renewal, "invoice.paid")["data"]["object"]
        assert (free["status"], free["total"], free["amount_paid"]) == ("paid", 0, 0)

        after = await books(db, buyer.user_id)
        assert after.balance == after.ledger_sum == (per_period + free_period) * UNITS, plan
        assert (after.account.status, after.plan) == ("active", plan)


async def test_a_partial_coupon_still_collects_money_and_grants_the_period(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    customer_id = await flows.ensure_customer(db, billing, user_id=buyer.user_id, email=buyer.email)
    params = flows.checkout_params(
        billing, user_id=buyer.user_id, customer_id=customer_id, kind="plan", item_id="basic"
    )
    session_id = (await billing.stripe.create_checkout_session(params))["id"]
    events = stripe_fake.complete_checkout(session_id)
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]

    stripe_fake.apply_coupon(sub_id, stripe_fake.create_coupon(percent_off=50))
    renewal = stripe_fake.renew_subscription(sub_id)
    assert event_of(renewal, "invoice.paid")["data"]["object"]["amount_paid"] == 500
    assert (await books(db, buyer.user_id)).balance == 200 * UNITS

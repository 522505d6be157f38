"""Account deletion cancels the subscription at Stripe (`cancel_billing_for_user`)."""

from __future__ import annotations

from portal.accounts.models import User
from portal.billing.runtime import Billing
from portal.billing.service import cancel_billing_for_user
from portal.db import Database
from tests.billing.conftest import (
    MakeBuyer,
    books,
    event_of,
    signed_in_browser,
    start_checkout,
)
from tests.fakes.stripe_api import FakeStripe
from tests.portal.support import PASSWORD


async def test_the_subscription_is_canceled_at_stripe(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "basic")
    events = stripe_fake.complete_checkout(session_id)
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]

    async with db.transaction() as session:
        assert await cancel_billing_for_user(session, buyer.user_id, billing=billing) == [sub_id]
    assert stripe_fake.subscriptions[sub_id]["status"] == "canceled"
    assert stripe_fake.requests[-1][:2] == ("DELETE", f"/v1/subscriptions/{sub_id}")

    stripe_fake.wait_for_deliveries()  # Stripe's customer.subscription.deleted
    after = await books(db, buyer.user_id)
    assert (after.account.status, after.plan) == ("canceled", "free")
    async with db.transaction() as session:  # nothing live is left to cancel
        assert await cancel_billing_for_user(session, buyer.user_id, billing=billing) == []


async def test_someone_who_never_paid_needs_no_stripe_call(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    calls = len(stripe_fake.requests)
    async with db.transaction() as session:
        assert await cancel_billing_for_user(session, buyer.user_id, billing=billing) == []
    assert len(stripe_fake.requests) == calls


async def test_deleting_the_account_in_the_portal_cancels_the_subscription(
    stripe_world, stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "basic")
    events = stripe_fake.complete_checkout(session_id)
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]

    browser = await signed_in_browser(stripe_world.portal.url, buyer.email)
    response = await browser.post(
        "/account/delete", {"password": PASSWORD, "confirm": "yes"}, page="/account"
    )
    assert response.status_code == 200, response.text
    assert stripe_fake.subscriptions[sub_id]["status"] == "canceled"
    async with db.session() as session:
        assert await session.get(User, buyer.user_id) is None


async def test_deletion_waits_when_stripe_refuses_the_cancellation(
    stripe_world, stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "basic")
    stripe_fake.complete_checkout(session_id)
    stripe_fake.wait_for_deliveries()
    browser = await signed_in_browser(stripe_world.portal.url, buyer.email)

    key = stripe_fake.secret_key
    stripe_fake.secret_key = "sk_test_rotated"  # Stripe now refuses our calls (401)
    try:
        response = await browser.post(
            "/account/delete", {"password": PASSWORD, "confirm": "yes"}, page="/account"
        )
    finally:
        stripe_fake.secret_key = key
    assert response.status_code == 503
    assert "nothing was deleted" in response.text
    async with db.session() as session:
        assert await session.get(User, buyer.user_id) is not None

"""Events that name something of ours but no user, or whose object is gone at Stripe, are
kept as *unmatched*: listed for the operator, tried again on redelivery, closed by
`billing sync` once the customer is linked - never silently marked handled."""

from __future__ import annotations

import argparse

import pytest

from portal.billing.runtime import Billing
from portal.cli.billing_commands import billing_unmatched
from portal.db import Database
from tests.billing.conftest import (
    UNITS,
    MakeBuyer,
    StripeWorld,
    books,
    event_of,
    start_checkout,
)
from tests.billing.test_admin_commands import admin
from tests.fakes.stripe_api import FakeStripe


async def walk_in_pack(world: StripeWorld, billing: Billing) -> tuple[str, dict]:
    """A pack sold to a customer the operator made in the Dashboard (no user id on it,
    on the customer or the Checkout): (customer id, its checkout.session.completed)."""
    fake = world.fake
    customer_id = fake.create_customer(email="walk-in@example.com")
    session = await billing.stripe.create_checkout_session(
        {
            "mode": "payment",
            "customer": customer_id,
            "line_items": [{"price": world.prices["small"], "quantity": 1}],
            "success_url": "https://example.com/ok",
            "cancel_url": "https://example.com/no",
        }
    )
    return customer_id, event_of(
        fake.complete_checkout(session["id"]), "checkout.session.completed"
    )


async def unmatched_listing(world: StripeWorld, capsys: pytest.CaptureFixture[str]) -> str:
    assert await billing_unmatched(argparse.Namespace(), world.settings) == 0
    return capsys.readouterr().out


async def test_an_unmatched_payment_is_listed_and_applied_once_its_customer_names_the_user(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    buyer = await make_buyer()
    stripe_fake.auto_deliver = False
    customer_id, completed = await walk_in_pack(stripe_world, billing)

    for _ in range(2):  # a redelivery tries again rather than answering "duplicate"
        answer = await stripe_fake.adeliver(completed)
        assert (answer.status_code, answer.json()["outcome"]) == (200, "unmatched")
    listing = await unmatched_listing(stripe_world, capsys)
    assert completed["id"] in listing and customer_id in listing
    assert "no user matches" in listing
    assert (await books(db, buyer.user_id)).balance == 0

    # the operator names the user on the Stripe customer, then resends the event
    await billing.stripe.client.v1.customers.update_async(
        customer_id, {"metadata": {"user_id": buyer.user_id}}
    )
    assert (await stripe_fake.adeliver(completed)).json()["outcome"] == "processed"
    assert (await stripe_fake.adeliver(completed)).json()["outcome"] == "duplicate"
    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS and len(after.entries) == 1
    assert after.account.stripe_customer_id == customer_id
    assert completed["id"] not in await unmatched_listing(stripe_world, capsys)


async def test_billing_sync_applies_and_closes_the_customers_unmatched_events(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
) -> None:
    buyer = await make_buyer()
    stripe_fake.auto_deliver = False
    customer_id, completed = await walk_in_pack(stripe_world, billing)
    assert (await stripe_fake.adeliver(completed)).json()["outcome"] == "unmatched"

    code, out, err = await admin(stripe_world, "billing", "unmatched")
    assert code == 0, err
    assert completed["id"] in out and "1 unmatched event(s)" in out

    await billing.stripe.client.v1.customers.update_async(
        customer_id, {"metadata": {"user_id": buyer.user_id}}
    )
    code, out, err = await admin(stripe_world, "billing", "sync", "--email", buyer.email)
    assert code == 0, err
    assert f"1 unmatched event(s) of this customer now handled: {completed['id']}" in out
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS

    code, out, err = await admin(stripe_world, "billing", "unmatched")
    assert (code, out.strip()) == (0, "no unmatched Stripe events")
    assert (await stripe_fake.adeliver(completed)).json()["outcome"] == "duplicate"
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS


async def test_an_event_whose_object_is_gone_at_stripe_is_unmatched_not_handled(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")
    del stripe_fake.checkout_sessions[session_id]  # gone at Stripe: reads answer 404

    answer = await stripe_fake.adeliver(completed)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "unmatched")
    listing = await unmatched_listing(stripe_world, capsys)
    assert completed["id"] in listing and "object gone at Stripe" in listing
    assert session_id in listing and completed["data"]["object"]["customer"] in listing
    assert (await books(db, buyer.user_id)).balance == 0

"""Stripe's webhooks, delivered by the fake over HTTP to the real portal: every payment
becomes credits exactly once, whatever the order or number of deliveries; forged or
replayed-later deliveries change nothing."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
import stripe

from portal.billing.runtime import Billing
from portal.billing.service import billing_export
from portal.billing.stripe_gateway import StripeGateway
from portal.billing.webhooks import handle_event
from portal.credits.models import CauseType, EntryKind
from portal.db import Database
from tests.billing.conftest import (
    UNITS,
    MakeBuyer,
    StripeWorld,
    books,
    event_of,
    start_checkout,
)
from tests.fakes.stripe_api import FakeStripe


async def test_pack_paid_grants_its_credits(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.complete_checkout(session_id)

    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS
    [grant] = after.entries
    assert (grant.kind, grant.cause_type, grant.cause_id) == (
        EntryKind.PURCHASE,
        CauseType.STRIPE_EVENT,
        session_id,
    )
    assert (after.account.card_brand, after.account.card_last4) == ("visa", "4242")
    assert after.plan == "free"  # a pack is not a plan
    assert all(d["status_code"] == 200 for d in stripe_fake.deliveries)


async def test_the_same_event_three_times_grants_once(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")

    # three deliveries at once (Stripe retries overlap), then once more later
    answers = await asyncio.gather(*(stripe_fake.adeliver(completed) for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sorted(a.json()["outcome"] for a in answers).count("processed") == 1
    assert (await stripe_fake.adeliver(completed)).json()["outcome"] == "duplicate"

    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS
    assert len(after.entries) == 1
    assert after.events == 1


async def test_subscription_events_in_reverse_order_end_in_the_right_state(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
) -> None:
    """`customer.subscription.updated` before `.created`, `invoice.paid` before
    `checkout.session.completed`: the plan is the latest one and the period is paid once."""
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "basic")
    stripe_fake.auto_deliver = False
    events = stripe_fake.complete_checkout(session_id)
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]
    events += stripe_fake.update_subscription(sub_id, price=stripe_world.prices["pro"])

    order = [e["type"] for e in reversed(events)]
    assert order.index("customer.subscription.updated") < order.index(
        "customer.subscription.created"
    )
    assert order.index("invoice.paid") < order.index("checkout.session.completed")
    for event in reversed(events):
        assert (await stripe_fake.adeliver(event)).status_code == 200

    after = await books(db, buyer.user_id)
    account = after.account
    assert (account.subscription_id, account.plan, account.status) == (sub_id, "pro", "active")
    assert after.plan == "pro"
    stripe_sub = stripe_fake.subscriptions[sub_id]
    assert int(account.current_period_end.timestamp()) == stripe_sub["current_period_end"]
    assert (account.card_brand, account.card_last4) == ("visa", "4242")
    # the first invoice was for Basic: its 100 credits, once
    invoice_id = event_of(events, "invoice.paid")["data"]["object"]["id"]
    assert [(e.cause_id, e.amount) for e in after.entries] == [(invoice_id, 100 * UNITS)]
    assert after.balance == after.ledger_sum == 100 * UNITS


async def test_renewals_failures_and_cancellation_move_plan_and_credits(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "basic")
    events = stripe_fake.complete_checkout(session_id)
    sub_id = event_of(events, "customer.subscription.created")["data"]["object"]["id"]
    assert (await books(db, buyer.user_id)).balance == 100 * UNITS

    stripe_fake.renew_subscription(sub_id)  # next period paid: 100 more
    after = await books(db, buyer.user_id)
    assert after.balance == 200 * UNITS and after.plan == "basic"

    stripe_fake.fail_invoice_payment(sub_id)  # not paid: no credits, Stripe retries
    after = await books(db, buyer.user_id)
    assert after.balance == 200 * UNITS
    assert (after.account.status, after.plan) == ("past_due", "basic")

    stripe_fake.cancel_subscription(sub_id)
    after = await books(db, buyer.user_id)
    assert (after.account.status, after.plan) == ("canceled", "free")
    assert after.balance == after.ledger_sum == 200 * UNITS  # bought credits stay


async def test_a_bank_debit_grants_when_it_settles_not_before(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.complete_checkout(session_id, async_payment=True)
    assert (await books(db, buyer.user_id)).balance == 0  # completed, but unpaid

    stripe_fake.settle_async_payment(session_id, succeeded=True)
    after = await books(db, buyer.user_id)
    assert after.balance == 10 * UNITS and len(after.entries) == 1


async def test_a_failed_bank_debit_grants_nothing(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "pro")
    stripe_fake.complete_checkout(session_id, async_payment=True)
    stripe_fake.settle_async_payment(session_id, succeeded=False)
    after = await books(db, buyer.user_id)
    assert after.balance == 0 and after.entries == []
    assert (after.account.status, after.plan) == ("incomplete_expired", "free")


async def test_a_bad_signature_is_refused_and_writes_nothing(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")
    before = await books(db, buyer.user_id)

    forged = await stripe_fake.adeliver(completed, signature_secret="whsec_someone_else")
    assert forged.status_code == 400
    async with httpx.AsyncClient() as http:
        unsigned = await http.post(stripe_fake.webhook_url, content=b'{"id": "evt_1"}')
    assert unsigned.status_code == 400

    after = await books(db, buyer.user_id)
    assert (after.balance, after.entries, after.events) == (0, [], 0)
    assert billing_export(after.account) == billing_export(before.account)
    assert after.account.card_last4 is None


async def test_a_stale_timestamp_is_refused(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")

    replayed = await stripe_fake.adeliver(completed, timestamp=int(time.time()) - 10 * 60)
    assert replayed.status_code == 400
    after = await books(db, buyer.user_id)
    assert (after.balance, after.events) == (0, 0)

    assert (await stripe_fake.adeliver(completed)).status_code == 200  # the real one
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS


async def test_unknown_event_types_are_acknowledged_and_ignored(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    [expired] = stripe_fake.expire_checkout(session_id)
    answer = await stripe_fake.adeliver(expired)
    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    assert (await books(db, buyer.user_id)).events == 0


async def test_partial_refunds_in_any_order_claw_back_proportionally(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    events = stripe_fake.complete_checkout(session_id)
    charge_id = event_of(events, "charge.succeeded")["data"]["object"]["id"]

    stripe_fake.auto_deliver = False
    first = stripe_fake.refund_charge(charge_id, amount=250)  # a quarter of $10
    second = stripe_fake.refund_charge(charge_id, amount=250)  # half refunded in all
    for event in [*second, *first, *second]:
        assert (await stripe_fake.adeliver(event)).status_code == 200

    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 5 * UNITS
    clawbacks = [e for e in after.entries if e.kind == EntryKind.CLAWBACK]
    assert sum(e.amount for e in clawbacks) == -5 * UNITS

    stripe_fake.auto_deliver = True
    stripe_fake.dispute_charge(charge_id)  # the rest is disputed: nothing bought remains
    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 0


async def test_a_refund_that_arrives_before_the_payment_nets_to_zero(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    events = stripe_fake.complete_checkout(session_id)
    charge_id = event_of(events, "charge.succeeded")["data"]["object"]["id"]
    events += stripe_fake.refund_charge(charge_id)
    for event in reversed(events):
        assert (await stripe_fake.adeliver(event)).status_code == 200
    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 0
    assert sorted(e.amount for e in after.entries) == [-10 * UNITS, 10 * UNITS]


async def test_when_stripe_cannot_be_read_nothing_is_recorded_and_the_retry_applies(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    stripe_fake.auto_deliver = False
    completed = event_of(stripe_fake.complete_checkout(session_id), "checkout.session.completed")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    unreachable = Billing(
        catalog=billing.catalog,
        public_url=billing.public_url,
        stripe_gateway=StripeGateway("sk_test_fake", api_base=dead, max_network_retries=0),
    )
    with pytest.raises(stripe.APIConnectionError):
        await handle_event(db, unreachable, completed)
    await unreachable.aclose()
    after = await books(db, buyer.user_id)
    assert (after.balance, after.events) == (0, 0)  # Stripe will deliver again

    assert await handle_event(db, billing, completed) == "processed"
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS

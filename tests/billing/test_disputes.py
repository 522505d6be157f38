"""Disputes followed to their end: an inquiry (no money moved) takes nothing; a chargeback
holds the disputed share while open, keeps it taken if lost and gives it back if won -
each step once, whatever the order or number of deliveries."""

from __future__ import annotations

import argparse

from portal.accounts.models import User
from portal.billing.runtime import Billing
from portal.cli.billing_commands import billing_sync
from portal.credits.models import EntryKind
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


async def paid_pack(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> tuple[str, str]:
    """A buyer with a paid 10-credit pack; (user id, charge id)."""
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "pack", "small")
    events = stripe_fake.complete_checkout(session_id)
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS
    return buyer.user_id, event_of(events, "charge.succeeded")["data"]["object"]["id"]


async def test_an_inquiry_takes_nothing_back(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    user_id, charge_id = await paid_pack(stripe_fake, billing, db, make_buyer)
    created = stripe_fake.dispute_charge(charge_id, inquiry=True)
    assert [e["type"] for e in created] == ["charge.dispute.created"]
    assert created[0]["data"]["object"]["status"] == "warning_needs_response"
    assert (await books(db, user_id)).balance == 10 * UNITS

    stripe_fake.close_dispute(created[0]["data"]["object"]["id"], won=False)
    after = await books(db, user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS
    assert [e.kind for e in after.entries] == [EntryKind.PURCHASE]


async def test_a_chargeback_is_held_while_open_and_given_back_when_won(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    user_id, charge_id = await paid_pack(stripe_fake, billing, db, make_buyer)
    stripe_fake.auto_deliver = False
    opened = stripe_fake.dispute_charge(charge_id)
    dispute_id = opened[0]["data"]["object"]["id"]
    for event in opened:
        assert (await stripe_fake.adeliver(event)).status_code == 200
    held = await books(db, user_id)
    assert held.balance == held.ledger_sum == 0  # the disputed money is gone for now

    closed = stripe_fake.close_dispute(dispute_id, won=True)
    assert [e["type"] for e in closed] == [
        "charge.dispute.funds_reinstated",
        "charge.dispute.closed",
    ]
    # every event again, in reverse and twice: one hold, one release
    for event in [*reversed(closed), *reversed(opened), *closed, *opened]:
        assert (await stripe_fake.adeliver(event)).status_code == 200
    after = await books(db, user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS
    assert sorted(e.amount for e in after.entries) == [-10 * UNITS, 10 * UNITS, 10 * UNITS]
    assert sorted(e.cause_id.rsplit(":", 1)[-1] for e in after.entries[1:]) == [
        "reinstated",
        "withdrawn",
    ]


async def test_a_lost_chargeback_is_taken_back_once(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    user_id, charge_id = await paid_pack(stripe_fake, billing, db, make_buyer)
    stripe_fake.auto_deliver = False
    opened = stripe_fake.dispute_charge(charge_id)
    closed = stripe_fake.close_dispute(opened[0]["data"]["object"]["id"], won=False)
    # the end first, then the start, then all again
    for event in [*closed, *opened, *closed, *opened]:
        assert (await stripe_fake.adeliver(event)).status_code == 200
    after = await books(db, user_id)
    assert after.balance == after.ledger_sum == 0
    assert [e.amount for e in after.entries] == [10 * UNITS, -10 * UNITS]


async def test_a_won_dispute_seen_only_at_its_end_moves_nothing(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    user_id, charge_id = await paid_pack(stripe_fake, billing, db, make_buyer)
    stripe_fake.auto_deliver = False
    opened = stripe_fake.dispute_charge(charge_id)
    closed = stripe_fake.close_dispute(opened[0]["data"]["object"]["id"], won=True)
    for event in [*closed, *opened]:  # by the time anything arrives, it is won
        assert (await stripe_fake.adeliver(event)).status_code == 200
    after = await books(db, user_id)
    assert after.balance == 10 * UNITS and len(after.entries) == 1


async def test_an_inquiry_that_escalates_is_held_then(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    user_id, charge_id = await paid_pack(stripe_fake, billing, db, make_buyer)
    [created] = stripe_fake.dispute_charge(charge_id, inquiry=True)
    assert (await books(db, user_id)).balance == 10 * UNITS
    [withdrawn] = stripe_fake.escalate_dispute(created["data"]["object"]["id"])
    assert withdrawn["type"] == "charge.dispute.funds_withdrawn"
    assert (await books(db, user_id)).balance == 0


async def test_a_dispute_after_a_partial_refund_takes_only_the_rest(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    user_id, charge_id = await paid_pack(stripe_fake, billing, db, make_buyer)
    stripe_fake.refund_charge(charge_id, amount=300)  # 3 credits back
    opened = stripe_fake.dispute_charge(charge_id)  # the other $7 disputed
    assert (await books(db, user_id)).balance == 0
    stripe_fake.close_dispute(opened[0]["data"]["object"]["id"], won=True)
    after = await books(db, user_id)
    assert after.balance == after.ledger_sum == 7 * UNITS


async def test_sync_applies_disputes_whose_webhooks_never_came(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
) -> None:
    won_user, won_charge = await paid_pack(stripe_fake, billing, db, make_buyer)
    lost_user, lost_charge = await paid_pack(stripe_fake, billing, db, make_buyer)
    stripe_fake.auto_deliver = False  # the endpoint was down
    for charge_id, won in ((won_charge, True), (lost_charge, False)):
        opened = stripe_fake.dispute_charge(charge_id)
        stripe_fake.close_dispute(opened[0]["data"]["object"]["id"], won=won)

    for _ in range(2):  # and again: nothing changes
        for user_id in (won_user, lost_user):
            async with db.session() as session:
                email = (await session.get(User, user_id)).email
            assert await billing_sync(argparse.Namespace(email=email), stripe_world.settings) == 0
    assert (await books(db, won_user)).balance == 10 * UNITS
    lost = await books(db, lost_user)
    assert lost.balance == lost.ledger_sum == 0 and len(lost.entries) == 2

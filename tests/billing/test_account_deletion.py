"""Account deletion cancels the subscription at Stripe: outside any transaction, and
before the account is deleted (`privacy.flows.delete_account` says why that order)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.flows import FlowError
from portal.accounts.models import User
from portal.billing import flows
from portal.billing.runtime import Billing
from portal.billing.stripe_gateway import StripeGateway
from portal.db import Database
from portal.privacy import flows as privacy_flows
from tests.billing.conftest import (
    Buyer,
    MakeBuyer,
    books,
    event_of,
    signed_in_browser,
    start_checkout,
)
from tests.fakes.stripe_api import FakeStripe
from tests.portal.support import PASSWORD


@dataclass
class WatchedDatabase(Database):
    """The test's database, counting the sessions and transactions open right now."""

    open: int = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        self.open += 1
        try:
            async with super().transaction() as session:
                yield session
        finally:
            self.open -= 1

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        self.open += 1
        try:
            async with super().session() as session:
                yield session
        finally:
            self.open -= 1


class WatchingGateway(StripeGateway):
    """The real Stripe client (talking to the fake), noting at each cancellation how many
    database sessions were open and whether the account still existed."""

    def __init__(self, secret_key: str, api_base: str | None, db: WatchedDatabase, user_id: str):
        super().__init__(secret_key, api_base=api_base)
        self.db, self.user_id = db, user_id
        self.cancellations: list[tuple[str, int, bool]] = []

    async def cancel_subscription(self, subscription_id: str) -> dict:
        open_now = self.db.open
        async with self.db.sessions() as session:
            exists = await session.get(User, self.user_id) is not None
        self.cancellations.append((subscription_id, open_now, exists))
        return await super().cancel_subscription(subscription_id)


async def subscribed(billing: Billing, db: Database, make_buyer: MakeBuyer, fake: FakeStripe):
    buyer = await make_buyer()
    session_id = await start_checkout(billing, db, buyer, "plan", "basic")
    events = fake.complete_checkout(session_id)
    fake.wait_for_deliveries()
    return buyer, event_of(events, "customer.subscription.created")["data"]["object"]["id"]


def watching(billing: Billing, db: Database, fake: FakeStripe, buyer: Buyer):
    watched_db = WatchedDatabase(db.url, db.engine, db.sessions)
    assert billing.stripe_gateway is not None
    gateway = WatchingGateway(
        fake.secret_key, billing.stripe_gateway.api_base, watched_db, buyer.user_id
    )
    context = Billing(
        catalog=billing.catalog, public_url=billing.public_url, stripe_gateway=gateway
    )
    return watched_db, gateway, context


async def customer_of(db: Database, user_id: str) -> str | None:
    account = (await books(db, user_id)).account
    return account.stripe_customer_id if account is not None else None


async def test_stripe_is_called_outside_any_transaction_and_before_the_deletion(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer, sub_id = await subscribed(billing, db, make_buyer, stripe_fake)
    watched_db, gateway, context = watching(billing, db, stripe_fake, buyer)
    try:
        deleted = await privacy_flows.delete_account(
            watched_db, context, user_id=buyer.user_id, password=PASSWORD
        )
    finally:
        await gateway.aclose()
    # no database session open during the call; the account was still there
    assert gateway.cancellations == [(sub_id, 0, True)]
    assert stripe_fake.subscriptions[sub_id]["status"] == "canceled"
    assert buyer.email in deleted.addresses
    async with db.session() as session:
        assert await session.get(User, buyer.user_id) is None


async def test_a_wrong_password_calls_stripe_for_nothing(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer, sub_id = await subscribed(billing, db, make_buyer, stripe_fake)
    watched_db, gateway, context = watching(billing, db, stripe_fake, buyer)
    try:
        with pytest.raises(FlowError):
            await privacy_flows.delete_account(
                watched_db, context, user_id=buyer.user_id, password="not the password"
            )
    finally:
        await gateway.aclose()
    assert gateway.cancellations == []
    assert stripe_fake.subscriptions[sub_id]["status"] == "active"
    async with db.session() as session:
        assert await session.get(User, buyer.user_id) is not None


async def test_the_subscription_is_canceled_at_stripe(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer, sub_id = await subscribed(billing, db, make_buyer, stripe_fake)
    customer_id = await customer_of(db, buyer.user_id)

    assert await flows.cancel_subscriptions(billing, customer_id) == [sub_id]
    assert stripe_fake.subscriptions[sub_id]["status"] == "canceled"
    assert stripe_fake.requests[-1][:2] == ("DELETE", f"/v1/subscriptions/{sub_id}")

    stripe_fake.wait_for_deliveries()  # Stripe's customer.subscription.deleted
    after = await books(db, buyer.user_id)
    assert (after.account.status, after.plan) == ("canceled", "free")
    assert await flows.cancel_subscriptions(billing, customer_id) == []  # nothing live left


async def test_someone_who_never_paid_needs_no_stripe_call(
    stripe_fake: FakeStripe, billing: Billing, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    calls = len(stripe_fake.requests)
    assert await flows.cancel_subscriptions(billing, await customer_of(db, buyer.user_id)) == []
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
    await browser.client.aclose()
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
        await browser.client.aclose()
    assert response.status_code == 503
    assert "nothing was deleted" in response.text
    async with db.session() as session:
        assert await session.get(User, buyer.user_id) is not None

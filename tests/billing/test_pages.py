"""The Billing page and Checkout as a signed-in person uses them (HTTP to the real portal)."""

from __future__ import annotations

import re

from portal.billing.runtime import Billing
from portal.db import Database
from tests.billing.conftest import (
    UNITS,
    MakeBuyer,
    StripeWorld,
    books,
    signed_in_browser,
    start_checkout,
)
from tests.fakes.stripe_api import FakeStripe
from tests.portal.support import Browser

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


async def submit(browser: Browser, path: str, data: dict[str, str]):
    page = await browser.get("/billing")
    token = _CSRF.search(page.text).group(1)
    return await browser.client.post(path, data={"csrf_token": token, **data})


async def test_pack_checkout_success_redirect_and_webhook_grant_once(
    stripe_world: StripeWorld, stripe_fake: FakeStripe, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    browser = await signed_in_browser(stripe_world.portal.url, buyer.email)
    page = await browser.get("/billing")
    assert page.status_code == 200
    assert "10 credits" in page.text and "Pro" in page.text
    # the page's forms may continue to Stripe's hosted pages
    assert f"form-action 'self' {stripe_fake.url}" in page.headers["content-security-policy"]

    started = await submit(browser, "/billing/checkout", {"kind": "pack", "item": "small"})
    assert started.status_code == 303
    pay_url = started.headers["location"]
    assert pay_url.startswith(f"{stripe_fake.url}/pay/cs_")
    session_id = pay_url.rsplit("/", 1)[-1]

    stripe_fake.auto_deliver = False  # the buyer comes back before any webhook
    events = stripe_fake.complete_checkout(session_id)
    success = await browser.get(f"/billing/success?session_id={session_id}")
    assert success.status_code == 200
    assert "10 credits are on your account" in success.text
    assert (await books(db, buyer.user_id)).balance == 10 * UNITS

    for event in events:  # then Stripe's deliveries, and a reload of the page
        assert (await stripe_fake.adeliver(event)).status_code == 200
    assert (await browser.get(f"/billing/success?session_id={session_id}")).status_code == 200
    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS and len(after.entries) == 1
    await browser.client.aclose()


async def test_checkout_needs_the_pages_csrf_token(
    stripe_world: StripeWorld, stripe_fake: FakeStripe, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    browser = await signed_in_browser(stripe_world.portal.url, buyer.email)
    sessions_before = len(stripe_fake.checkout_sessions)
    refused = await browser.client.post("/billing/checkout", data={"kind": "pack", "item": "small"})
    assert refused.status_code == 403
    assert len(stripe_fake.checkout_sessions) == sessions_before
    unknown = await submit(browser, "/billing/checkout", {"kind": "pack", "item": "huge"})
    assert unknown.status_code == 400 and "No such plan or credit pack" in unknown.text
    await browser.client.aclose()


async def test_nobody_can_fulfil_someone_elses_checkout(
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    billing: Billing,
    db: Database,
    make_buyer: MakeBuyer,
) -> None:
    owner, other = await make_buyer(), await make_buyer()
    stripe_fake.auto_deliver = False
    session_id = await start_checkout(billing, db, owner, "pack", "small")
    stripe_fake.complete_checkout(session_id)
    browser = await signed_in_browser(stripe_world.portal.url, other.email)
    page = await browser.get(f"/billing/success?session_id={session_id}")
    assert page.status_code == 404
    assert (await books(db, other.user_id)).balance == 0
    assert (await books(db, owner.user_id)).balance == 0  # the owner's webhook will do it
    await browser.client.aclose()


async def test_subscriber_sees_plan_and_card_and_reaches_the_billing_portal(
    stripe_world: StripeWorld, stripe_fake: FakeStripe, db: Database, make_buyer: MakeBuyer
) -> None:
    buyer = await make_buyer()
    browser = await signed_in_browser(stripe_world.portal.url, buyer.email)
    started = await submit(browser, "/billing/checkout", {"kind": "plan", "item": "pro"})
    stripe_fake.complete_checkout(started.headers["location"].rsplit("/", 1)[-1])

    page = await browser.get("/billing")
    assert re.search(r'id="plan-name">Pro<', page.text)
    assert re.search(r'id="plan-status">active<', page.text)
    assert "visa •••• 4242" in page.text
    assert (await books(db, buyer.user_id)).balance == 500 * UNITS

    again = await submit(browser, "/billing/checkout", {"kind": "plan", "item": "basic"})
    assert again.status_code == 409 and "already have a subscription" in again.text

    portal = await submit(browser, "/billing/portal", {})
    assert portal.status_code == 303
    assert portal.headers["location"].startswith(f"{stripe_fake.url}/portal/bps_")

    canceled = await browser.get("/billing/cancel")
    assert canceled.status_code == 303
    assert "Checkout canceled" in (await browser.get(canceled.headers["location"])).text
    await browser.client.aclose()

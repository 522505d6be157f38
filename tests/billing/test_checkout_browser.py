"""In Chromium: the Billing page, Buy, the (fake) hosted Checkout page, Pay, and back on
our success page with the balance raised. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from portal.db import Database
from tests.billing.conftest import UNITS, MakeBuyer, StripeWorld, books
from tests.browser.conftest import SCREENSHOTS
from tests.fakes.stripe_api import FakeStripe
from tests.portal.support import sign_in_with_chromium

pytestmark = pytest.mark.browser


async def test_buy_credits_through_hosted_checkout(
    chromium,
    stripe_world: StripeWorld,
    stripe_fake: FakeStripe,
    db: Database,
    make_buyer: MakeBuyer,
    request: pytest.FixtureRequest,
) -> None:
    shots = SCREENSHOTS / f"billing-{request.node.callspec.id}"
    shots.mkdir(parents=True, exist_ok=True)
    buyer = await make_buyer()
    context = await chromium.new_context(base_url=stripe_world.portal.url)
    page = await context.new_page()

    await sign_in_with_chromium(page, buyer.email)

    await page.goto("/billing")
    assert (await page.text_content("#balance-value")).strip() == "0"
    await page.screenshot(path=str(shots / "01-billing.png"), full_page=True)
    await page.click("tr[data-pack=small] button")
    await page.wait_for_url(f"{stripe_fake.url}/pay/cs_*")  # Stripe's hosted page
    assert "$10.00" in await page.text_content("#amount")
    await page.screenshot(path=str(shots / "02-checkout.png"), full_page=True)

    await page.click("#pay")
    await page.wait_for_url("**/billing/success?session_id=cs_*")
    assert "10 credits are on your account" in await page.text_content("#credits-added")
    assert (await page.text_content("#balance-value")).strip() == "10"
    await page.screenshot(path=str(shots / "03-success.png"), full_page=True)

    await page.goto("/billing")
    assert (await page.text_content("#balance-value")).strip() == "10"
    assert "visa •••• 4242" in await page.text_content("#card")
    after = await books(db, buyer.user_id)
    assert after.balance == after.ledger_sum == 10 * UNITS and len(after.entries) == 1
    await context.close()

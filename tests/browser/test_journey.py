"""The whole journey in Chromium: sign up, verify from the outbox, sign in, create a token,
call the gateway with the official openai SDK, see the usage row and chart, export, delete
the account; then the token is refused and sign-in fails. A screenshot of every page is
kept under test-artifacts/screenshots/."""

from __future__ import annotations

import json
import uuid

import openai
import pytest
from sqlalchemy import select

from portal.accounts.models import User
from portal.db import Database
from portal.usage.models import UsageRecord
from tests.browser.conftest import SCREENSHOTS, RunningPortal, wait_for
from tests.fixtures.gateway import RunningGateway
from tests.portal.support import Outbox, grant, sign_in_with_chromium

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

PASSWORD = "journey password 42"


async def test_sign_up_to_deletion(
    chromium, portal: RunningPortal, gateway: RunningGateway, db: Database, fresh_upstream,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    backend = request.node.callspec.id
    shots = SCREENSHOTS / f"journey-{backend}"
    shots.mkdir(parents=True, exist_ok=True)
    email = f"journey-{uuid.uuid4().hex[:8]}@example.com"
    outbox = Outbox(portal.settings.outbox_dir)
    context = await chromium.new_context(base_url=portal.url, accept_downloads=True)
    page = await context.new_page()
    step = 0

    async def shot(name: str) -> None:
        nonlocal step
        step += 1
        await page.screenshot(path=str(shots / f"{step:02d}-{name}.png"), full_page=True)

    # sign up
    await page.goto("/signup")
    await page.fill("input[name=name]", "Journey Person")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await shot("signup")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#check-email")
    await shot("check-email")

    # verify from the outbox
    link = outbox.last(email, "verify_email").link()
    await page.goto(link)
    await page.wait_for_selector("#verified")
    assert "402 Payment Required" in await page.inner_text("#get-credits")  # what to do next
    await shot("verified")

    # sign in
    await sign_in_with_chromium(page, email, PASSWORD)
    assert await page.locator("#get-credits").count() == 1  # balance 0: how to get credits
    await shot("dashboard-empty")

    # create a token
    await page.goto("/tokens")
    await page.fill("input[name=name]", "Desktop app")
    await page.click("main form[action='/tokens'] button[type=submit]")
    await page.wait_for_url("**/tokens")  # redirected after the POST
    token = (await page.text_content("#token-value")).strip()
    base_url = (await page.text_content("#base-url")).strip()
    assert token not in page.url
    assert base_url == f"{gateway.url}/v1"
    await shot("token-created")

    # the operator funds the account; the desktop app (openai SDK) calls the gateway
    async with db.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == email))
    await grant(db, user_id, "5")
    client = openai.AsyncOpenAI(base_url=base_url, api_key=token, max_retries=0)
    answer = await client.chat.completions.create(
        model="gpt-4.1-nano", messages=[{"role": "user", "content": "hello from the journey"}]
    )
    assert answer.choices[0].message.content == fresh_upstream.reply_text

    async def recorded():
        async with db.session() as session:
            return await session.scalar(select(UsageRecord).where(UsageRecord.user_id == user_id))

    record = await wait_for(recorded)
    assert record is not None, "the call was not metered"

    # the usage row and the chart
    await page.goto("/usage")
    row = page.locator(f"#usage-table tr[data-call-id='{record.call_id}']")
    assert await row.count() == 1
    assert "gpt-4.1-nano" in await row.inner_text()
    await shot("usage")
    await page.goto("/dashboard")
    bars = page.locator("#daily-usage-chart rect.bar[data-requests='1']")
    assert await bars.count() == 1
    assert record.call_id in await page.inner_text("#what-we-keep")
    await shot("dashboard-with-usage")

    # revoke a spare token: the list links to a confirmation page (no JavaScript needed)
    await page.goto("/tokens")
    assert await page.locator("#token-value").count() == 0  # shown once only
    await page.fill("input[name=name]", "Spare")
    await page.click("main form[action='/tokens'] button[type=submit]")
    await page.wait_for_url("**/tokens")
    await page.click("#tokens-table tr:has-text('Spare') a:has-text('Revoke')")
    await page.wait_for_selector("#confirm-revoke")
    await shot("token-revoke-confirm")
    await page.click("#confirm-revoke button[type=submit]")
    await page.wait_for_url("**/tokens?notice=token_revoked")
    assert "revoked" in await page.inner_text("#tokens-table tr:has-text('Spare')")

    # export
    await page.goto("/account")
    await shot("account")
    async with page.expect_download() as download_info:
        await page.click("#export-link")
    download = await download_info.value
    path = shots / "export.json"
    await download.save_as(str(path))
    exported = json.loads(path.read_text(encoding="utf-8"))
    assert [r["call_id"] for r in exported["tables"]["usage_records"]] == [record.call_id]
    charged = exported["tables"]["usage_records"][0]
    assert charged["charged_units"] == record.credits and "credits" not in charged
    assert exported["account"]["email"] == email
    path.unlink()  # the artefact directory keeps screenshots, not personal data

    # delete the account
    await page.fill("#delete input[name=password]", PASSWORD)
    await page.check("#delete input[name=confirm]")
    await page.click("#delete button[type=submit]")
    await page.wait_for_selector("#deleted")
    await shot("deleted")
    assert not outbox.to(email)  # the development outbox forgets the person too

    # the token is refused, and signing in fails
    with pytest.raises(openai.AuthenticationError) as refused:
        await client.chat.completions.create(
            model="gpt-4.1-nano", messages=[{"role": "user", "content": "still there?"}]
        )
    assert refused.value.status_code == 401
    await page.goto("/signin")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("main button[type=submit]")
    await page.wait_for_selector(".error")
    assert "do not match" in await page.inner_text(".error")
    await shot("signin-after-deletion")
    await client.close()
    await context.close()

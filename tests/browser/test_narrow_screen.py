"""Every page of the signed-in journey is usable on a phone: in Chromium at 390 px wide
the document never scrolls sideways (wide tables scroll inside their card)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import pytest

from portal.accounts.service import create_user
from portal.credits import ledger
from portal.db import Database
from portal.tokens.service import create_token
from tests.browser.conftest import SCREENSHOTS, RunningPortal
from tests.portal.support import PASSWORD, add_usage, grant, pkce, sign_in_with_chromium

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

WIDTH = 390


async def test_no_page_overflows_a_390px_screen(
    chromium, portal: RunningPortal, db: Database, request: pytest.FixtureRequest
) -> None:
    shots = SCREENSHOTS / f"narrow-{request.node.callspec.id}"
    shots.mkdir(parents=True, exist_ok=True)
    email = f"narrow-{uuid.uuid4().hex[:8]}@example.com"
    async with db.transaction() as session:
        user = await create_user(
            session, email=email, name="Narrow Screen Person", password=PASSWORD, verified=True
        )
        await ledger.ensure_account(session, user.id)
        _secret, token = await create_token(session, user, name="A rather long token name for CI")
    await grant(db, user.id, "12.345678912")
    for model in ("gpt-4.1-nano", "openrouter-gpt-4o-mini", "claude-haiku-4-5"):
        await add_usage(db, user.id, token_id=token.id, model=model, credits=123_456_789)
    _verifier, challenge = pkce()
    consent = "/connect?" + urlencode(
        {"callback_url": "http://127.0.0.1:54321/callback", "code_challenge": challenge,
         "code_challenge_method": "S256", "app": "AI WorkForce OS desktop"}
    )  # fmt: skip
    context = await chromium.new_context(
        base_url=portal.url, viewport={"width": WIDTH, "height": 844}, device_scale_factor=1
    )
    page = await context.new_page()
    for path in ("/signin", "/signup", "/reset"):
        await page.goto(path)
        await _fits(page, path, shots)
    await sign_in_with_chromium(page, email)
    for path in (
        "/dashboard",
        "/usage",
        "/tokens",
        f"/tokens/{token.id}/revoke",
        "/billing",
        "/account",
        consent,
    ):
        await page.goto(path)
        await _fits(page, path, shots)
    await context.close()


async def _fits(page, path: str, shots) -> None:
    name = path.strip("/").split("?")[0].replace("/", "-") or "home"
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{path} is {width} px wide at a {WIDTH} px viewport"

"""Spending limits on the portal's pages, in Chromium: a token created on the Tokens page
with a limit, the limit changed and removed there, and a connecting app's token given a
limit on the consent page; each checked at the real gateway (`/v1/credits` with the
token) and on the page itself."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from portal.accounts.service import create_user
from portal.credits import ledger
from portal.db import Database
from tests.browser.conftest import SCREENSHOTS, RunningPortal
from tests.fixtures.gateway import RunningGateway
from tests.portal.support import PASSWORD, exchange, grant, pkce

pytestmark = [pytest.mark.browser, pytest.mark.gateway]


async def _person(db: Database) -> tuple[str, str]:
    email = f"limits-{uuid.uuid4().hex[:8]}@example.com"
    async with db.transaction() as session:
        user = await create_user(
            session, email=email, name="Limit Person", password=PASSWORD, verified=True
        )
        await ledger.ensure_account(session, user.id)
    await grant(db, user.id, "20")
    return user.id, email


async def _signed_in(chromium: Any, portal: RunningPortal, email: str, path: str) -> Any:
    context = await chromium.new_context(base_url=portal.url)
    page = await context.new_page()
    await page.goto(path)
    await page.wait_for_url("**/signin?**")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("main button[type=submit]")
    return page


async def _credits(gateway: RunningGateway, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            f"{gateway.url}/v1/credits", headers={"authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_token_is_created_with_a_limit_and_the_limit_changed_on_the_tokens_page(
    chromium, portal: RunningPortal, gateway: RunningGateway, db: Database,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    shots = SCREENSHOTS / f"token-limits-{request.node.callspec.id}"
    shots.mkdir(parents=True, exist_ok=True)
    _user_id, email = await _person(db)
    page = await _signed_in(chromium, portal, email, "/tokens")
    await page.wait_for_selector("#limit-new")
    await page.fill("input[name=name]", "Capped laptop")
    await page.fill("#limit-new", "3")
    await page.select_option("#reset-new", "weekly")
    await page.click("text=Create token")
    await page.wait_for_selector("#new-token")
    token = (await page.text_content("#token-value") or "").strip()
    row = page.locator("tr", has_text="Capped laptop")
    summary = await row.locator(".limit-summary").inner_text()
    assert "0 of 3 credits used this week" in summary, summary
    await page.screenshot(path=str(shots / "01-created.png"), full_page=True)

    shown = await _credits(gateway, token)
    assert (shown["limit"], shown["limit_reset"], shown["used"], shown["remaining"]) == (
        "3", "weekly", "0", "3",
    )  # fmt: skip
    assert shown["resets_at"] is not None

    # change it: 1.5 credits a day
    await row.locator("input[name=limit]").fill("1.5")
    await row.locator("select[name=reset]").select_option("daily")
    await row.locator("button", has_text="Save limit").click()
    await page.wait_for_url("**/tokens?notice=token_limit_saved")
    row = page.locator("tr", has_text="Capped laptop")
    assert "0 of 1.5 credits used this day" in await row.locator(".limit-summary").inner_text()
    assert await row.locator("input[name=limit]").input_value() == "1.5"
    await page.screenshot(path=str(shots / "02-changed.png"), full_page=True)
    shown = await _credits(gateway, token)
    assert (shown["limit"], shown["limit_reset"]) == ("1.5", "daily")

    # a limit that is not a number is explained, nothing changes
    await row.locator("input[name=limit]").fill("lots")
    await row.locator("button", has_text="Save limit").click()
    assert "as a number of credits" in await page.inner_text("p.error")
    assert (await _credits(gateway, token))["limit"] == "1.5"

    # remove it
    await page.goto("/tokens")
    row = page.locator("tr", has_text="Capped laptop")
    await row.locator("input[name=limit]").fill("")
    await row.locator("select[name=reset]").select_option("none")
    await row.locator("button", has_text="Save limit").click()
    await page.wait_for_url("**/tokens?notice=token_limit_saved")
    assert "No limit" in await page.locator("tr", has_text="Capped laptop").inner_text()
    shown = await _credits(gateway, token)
    assert (shown["limit"], shown["remaining"], shown["resets_at"]) == (None, None, None)
    await page.context.close()


@pytest.fixture
def callback() -> Iterator[tuple[str, list[str]]]:
    """An app's loopback callback: its URL and the queries it received."""
    seen: list[str] = []

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/cb":
                seen.append(urlsplit(self.path).query)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"callback reached")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/cb", seen
    server.shutdown()
    server.server_close()


async def test_the_consent_page_gives_the_apps_token_a_spending_limit(
    chromium, portal: RunningPortal, gateway: RunningGateway, db: Database,
    callback: tuple[str, list[str]], request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    shots = SCREENSHOTS / f"token-limits-{request.node.callspec.id}"
    shots.mkdir(parents=True, exist_ok=True)
    url, seen = callback
    _user_id, email = await _person(db)
    verifier, challenge = pkce()
    asked = {"callback_url": url, "code_challenge": challenge,
             "code_challenge_method": "S256", "app": "Capped app"}  # fmt: skip
    page = await _signed_in(chromium, portal, email, "/connect?" + urlencode(asked))
    await page.wait_for_selector("#connect-consent")
    assert "spending limit" in (await page.inner_text("#connect-consent")).lower()

    await page.fill("#connect-limit", "0")  # refused with the reason, asked again
    await page.click("#connect-approve")
    assert "more than 0 credits" in await page.inner_text("#connect-consent p.error")
    assert seen == []

    await page.fill("#connect-limit", "2")
    await page.select_option("#connect-reset", "daily")
    await page.screenshot(path=str(shots / "03-consent.png"), full_page=True)
    await page.click("#connect-approve")
    await page.wait_for_selector("text=callback reached")
    code = parse_qs(seen[0])["code"][0]
    async with httpx.AsyncClient(base_url=portal.url, timeout=30) as http:
        answer = await exchange(http, code, verifier, url)
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]

    shown = await _credits(gateway, token)
    assert (shown["limit"], shown["limit_reset"], shown["remaining"]) == ("2", "daily", "2")
    await page.goto("/tokens")
    row = page.locator("tr", has_text="Capped app")
    assert "0 of 2 credits used this day" in await row.locator(".limit-summary").inner_text()
    await page.context.close()

"""Connecting an app end to end: the stdlib client printed in docs/connect.md (run as
written) against the real portal, Chromium signing in and approving, then the token it
got used on the real gateway; revoked on the Tokens page, the gateway refuses it."""

from __future__ import annotations

import asyncio
import re
import socket
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
from portal.settings import PROJECT_ROOT
from portal.tokens.secrets import hash_token
from portal.tokens.service import authenticate
from tests.browser.conftest import SCREENSHOTS, RunningPortal
from tests.fixtures.gateway import RunningGateway
from tests.portal.support import PASSWORD, grant, pkce

pytestmark = [pytest.mark.browser, pytest.mark.gateway]

APP = "Docs client"


def documented_client() -> Any:
    """`connect` from the Python block of docs/connect.md."""
    text = (PROJECT_ROOT / "docs" / "connect.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/connect.md shows one Python client"
    namespace: dict[str, Any] = {"__name__": "docs_connect_client"}
    exec(compile(blocks[0], "docs/connect.md", "exec"), namespace)
    return namespace["connect"]


async def _verified_person(db: Database) -> tuple[str, str]:
    email = f"connect-{uuid.uuid4().hex[:8]}@example.com"
    async with db.transaction() as session:
        user = await create_user(
            session, email=email, name="Connect Person", password=PASSWORD, verified=True
        )
        await ledger.ensure_account(session, user.id)
    return user.id, email


async def test_the_documented_client_connects_in_chromium(
    chromium, portal: RunningPortal, gateway: RunningGateway, db: Database,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    shots = SCREENSHOTS / f"connect-{request.node.callspec.id}"
    shots.mkdir(parents=True, exist_ok=True)
    user_id, email = await _verified_person(db)
    await grant(db, user_id, "2.5")

    loop = asyncio.get_running_loop()
    opened: asyncio.Future[str] = loop.create_future()
    outcome: dict[str, Any] = {}
    connect = documented_client()

    def run_client() -> None:  # blocks on its callback server, as the app would
        try:
            outcome["token"] = connect(
                portal.url,
                APP,
                open_browser=lambda url: loop.call_soon_threadsafe(opened.set_result, url),
            )
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    client = threading.Thread(target=run_client, daemon=True)
    client.start()
    url = await asyncio.wait_for(opened, timeout=30)

    context = await chromium.new_context()
    page = await context.new_page()
    await page.goto(url)  # signed out: the sign-in page, which returns to the consent page
    await page.wait_for_url("**/signin?**")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("main button[type=submit]")
    await page.wait_for_selector("#connect-consent")
    assert (await page.text_content("#connect-app")) == APP
    assert (await page.text_content("#connect-callback")).startswith("http://127.0.0.1:")
    await page.screenshot(path=str(shots / "01-consent.png"), full_page=True)
    await page.click("#connect-approve")
    await page.wait_for_selector("text=Done: you can close this tab")
    await asyncio.to_thread(client.join, 30)
    assert "error" not in outcome, outcome.get("error")
    token = outcome["token"]
    assert token["base_url"] == f"{gateway.url}/v1" and token["token_name"] == APP

    async with db.session() as session:  # stored as its hash, owned by the person
        identity = await authenticate(session, token["access_token"])
    assert identity.user_id == user_id and identity.token_hash == hash_token(token["access_token"])
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {"authorization": f"Bearer {token['access_token']}"}
        credits = await http.get(f"{gateway.url}/v1/credits", headers=headers)
        assert credits.status_code == 200, credits.text
        assert credits.json()["balance"] == "2.5"

        await page.goto(f"{portal.url}/tokens")  # listed with the app's name; revoke it
        row = page.locator(f"tr[data-token-id='{token['token_id']}']")
        assert APP in await row.inner_text() and "connected app" in await row.inner_text()
        await page.screenshot(path=str(shots / "02-tokens.png"), full_page=True)
        await row.locator("a", has_text="Revoke").click()
        await page.click("#confirm-revoke button[type=submit]")
        await page.wait_for_url("**/tokens?notice=token_revoked")
        refused = await http.get(f"{gateway.url}/v1/credits", headers=headers)
        assert refused.status_code == 401
    await context.close()


class _IPv6Server(HTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture
def ipv6_callback() -> Iterator[tuple[str, list[str]]]:
    """An app's callback listening on [::1] (RFC 8252 §7.3): its URL and the queries seen."""
    seen: list[str] = []

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/cb":  # not the favicon
                seen.append(urlsplit(self.path).query)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ipv6 callback reached")

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = _IPv6Server(("::1", 0), Callback)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://[::1]:{server.server_port}/cb", seen
    server.shutdown()
    server.server_close()


async def test_an_ipv6_loopback_callback_is_reached_in_chromium(
    chromium, portal: RunningPortal, db: Database, ipv6_callback: tuple[str, list[str]]
) -> None:
    """Chromium ignores `http://[::1]:port` in a CSP form-action, which would block the
    redirect after approval: the consent page must allow it another way."""
    callback, seen = ipv6_callback
    _user_id, email = await _verified_person(db)
    _verifier, challenge = pkce()
    query = {"callback_url": callback, "code_challenge": challenge,
             "code_challenge_method": "S256", "app": APP, "state": "v6"}  # fmt: skip
    context = await chromium.new_context(base_url=portal.url)
    page = await context.new_page()
    await page.goto("/connect?" + urlencode(query))
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("main button[type=submit]")
    await page.click("#connect-approve")
    await page.wait_for_selector("text=ipv6 callback reached")
    assert len(seen) == 1 and parse_qs(seen[0])["state"] == ["v6"] and parse_qs(seen[0])["code"]
    await context.close()

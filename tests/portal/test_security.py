"""The session cookie, its rotation, CSRF on every state-changing route, security headers."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from portal.db import Database
from portal.sessions.models import WebSession
from portal.settings import Settings
from portal.tokens.models import GatewayToken
from portal.web.app import create_app
from portal.web.routing import iter_routes
from tests.portal.conftest import NewBrowser, SignedInUser
from tests.portal.support import PASSWORD, Browser

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that must accept posts from elsewhere (signed by their sender instead).
# Webhooks are signed; the connect token endpoint reads no cookie (the app proves itself
# with the PKCE verifier of a code the person approved through a CSRF-checked form).
CSRF_EXEMPT_PATHS = {"/billing/webhook", "/stripe/webhook", "/api/v1/connect/token"}


def _set_cookie(response: httpx.Response) -> str:
    return response.headers["set-cookie"]


async def test_cookie_flags_on_localhost(browser: Browser) -> None:
    cookie = _set_cookie(await browser.get("/signin"))
    assert cookie.startswith("wfg_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # plain http on localhost would never send it back


async def test_cookie_is_secure_and_host_only_on_a_public_host(
    db: Database, portal_settings: Settings
) -> None:
    settings = portal_settings.model_copy(
        update={"portal_public_url": "https://portal.example.com"}
    )
    app = create_app(settings, database=db, background_jobs=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.example.com"
    ) as client:
        cookie = (await client.get("/signin")).headers["set-cookie"]
    assert cookie.startswith("__Host-wfg_session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "secure", "path=/"} <= flags
    assert not any(flag.startswith("domain") for flag in flags)


async def test_session_is_rotated_at_sign_in_and_stored_only_as_a_hash(
    signed_in: SignedInUser, new_browser: NewBrowser, db: Database
) -> None:
    _b, _id, email = await signed_in()
    browser = new_browser()
    await browser.get("/signin")
    before = browser.cookie()
    assert (await browser.sign_in(email)).status_code == 303
    after = browser.cookie()
    assert after and after != before
    async with db.session() as session:
        hashes = set(await session.scalars(select(WebSession.session_hash)))
    assert hashlib.sha256(after.encode()).hexdigest() in hashes
    assert after not in hashes and before not in hashes


async def test_a_cookie_planted_before_sign_in_is_useless_after(
    signed_in: SignedInUser, new_browser: NewBrowser
) -> None:
    """Session fixation: the value an attacker set is not the session."""
    _b, _id, email = await signed_in()
    victim = new_browser()
    planted = "A" * 43
    victim.client.cookies.set("wfg_session", planted, domain="localhost")
    await victim.sign_in(email)
    attacker = new_browser()
    attacker.client.cookies.set("wfg_session", planted, domain="localhost")
    assert not await attacker.signed_in()
    assert await victim.signed_in()


async def test_sign_out_destroys_the_session(signed_in: SignedInUser, db: Database) -> None:
    browser, user_id, _email = await signed_in()
    stolen = browser.cookie()
    assert (await browser.post("/signout")).status_code == 303
    assert not await browser.signed_in()
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(WebSession).where(WebSession.user_id == user_id)
        )
    assert count == 0
    browser.client.cookies.set("wfg_session", stolen, domain="localhost")
    assert (await browser.get("/dashboard")).status_code == 303  # to sign-in


def _unsafe_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for route in iter_routes(app.routes):
        if route.path not in CSRF_EXEMPT_PATHS:
            found.extend((method, route.path) for method in sorted(route.methods & UNSAFE))
    return found


async def test_every_state_changing_route_refuses_a_request_without_csrf_token(
    app: FastAPI, signed_in: SignedInUser, db: Database
) -> None:
    browser, _user_id, _email = await signed_in()
    created = await browser.api("POST", "/api/tokens", json={"name": "mine"})
    token_id = created.json()["token"]["id"]
    routes = _unsafe_routes(app)
    assert ("POST", "/account/delete") in routes and ("DELETE", "/api/tokens/{token_id}") in routes
    form = {"password": PASSWORD, "confirm": "yes", "name": "x", "email": "a@b.cd"}
    for method, path in routes:
        url = path.replace("{token_id}", token_id)
        for headers in ({}, {"x-csrf-token": "0" * 64}):
            response = await browser.client.request(method, url, data=form, headers=headers)
            assert response.status_code == 403, (method, path, response.status_code)
    async with db.session() as session:
        token = await session.get(GatewayToken, token_id)
        tokens = await session.scalar(select(func.count()).select_from(GatewayToken))
    assert token is not None and token.revoked_at is None and tokens == 1
    assert await browser.signed_in()  # not signed out, not deleted


async def test_csrf_token_of_another_browser_is_refused(
    signed_in: SignedInUser, new_browser: NewBrowser
) -> None:
    victim, _id, _email = await signed_in()
    attacker = new_browser()
    foreign = await attacker.csrf()
    response = await victim.client.post("/tokens", data={"csrf_token": foreign, "name": "evil"})
    assert response.status_code == 403


async def test_security_headers(browser: Browser) -> None:
    for path in ("/signin", "/api/openapi.json", "/nope"):
        headers = (await browser.get(path)).headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-content-type-options"] == "nosniff"


async def test_pages_load_nothing_from_other_sites(signed_in: SignedInUser) -> None:
    browser, _id, _email = await signed_in()
    for path in ("/dashboard", "/usage", "/tokens", "/account"):
        html = (await browser.get(path)).text
        assert re.findall(r'(?:src|href|action)="(?:https?:)?//', html) == []
        assert re.findall(r'<script src="([^"]+)"', html) == ["/static/portal.js"]
        assert "<script>" not in html  # no inline script (the CSP would block it anyway)


@pytest.mark.parametrize("path", ["/dashboard", "/usage", "/tokens", "/account", "/account/export"])
async def test_pages_need_a_session(browser: Browser, path: str) -> None:
    response = await browser.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin?next=")


@pytest.mark.parametrize("path", ["/api/me", "/api/tokens", "/api/usage", "/api/export"])
async def test_api_needs_a_session(browser: Browser, path: str) -> None:
    response = await browser.get(path)
    assert response.status_code == 401
    assert "detail" in response.json()

"""Connecting an app (OAuth 2.0 authorization code + PKCE): the consent page, the code
handed to the callback, and its exchange for a token at /api/v1/connect/token, against
the portal app on both database backends."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from portal.connect.models import ConnectCode
from portal.db import Database
from portal.db.base import utcnow
from portal.settings import PROJECT_ROOT, Settings
from portal.tokens.models import GatewayToken
from portal.tokens.service import authenticate
from portal.web.app import create_app
from tests.portal.conftest import PORTAL_URL, NewBrowser, SignedInUser
from tests.portal.support import CONNECT_CALLBACK, Browser, Outbox, exchange, pkce

CALLBACK = CONNECT_CALLBACK
APP = "AI WorkForce OS"


def connect_path(challenge: str, *, callback: str = CALLBACK, **extra: str) -> str:
    params = {
        "callback_url": callback,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "app": APP,
        **extra,
    }
    return "/connect?" + urlencode(params)


async def approve(browser: Browser, challenge: str, *, callback: str = CALLBACK,
                  decision: str = "approve", **extra: str) -> httpx.Response:  # fmt: skip
    """Open the consent page and press a button, as the person would."""
    path = connect_path(challenge, callback=callback, **extra)
    page = await browser.get(path)
    assert page.status_code == 200, page.text
    form = {
        "callback_url": callback,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "app": APP,
        "decision": decision,
        **extra,
    }
    return await browser.post("/connect", form, page=path)


def callback_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def app_client(new_browser: NewBrowser) -> httpx.AsyncClient:
    """The desktop app's HTTP client: no cookie, another address than the browser."""
    return new_browser("198.51.100.20").client


async def test_sign_in_approve_exchange_and_revoke(
    new_browser: NewBrowser, signed_in: SignedInUser, app_client: httpx.AsyncClient,
    db: Database, outbox: Outbox,
) -> None:  # fmt: skip
    _browser, _user_id, email = await signed_in()  # the account exists; this browser is new
    browser = new_browser()
    verifier, challenge = pkce()
    path = connect_path(challenge, state="xyz 123")

    first = await browser.get(path)  # signed out: sign in, then back to this very page
    assert first.status_code == 303
    assert first.headers["location"].startswith("/signin?next=")
    signin_page = await browser.get(first.headers["location"])
    signed = await browser.client.post(
        "/signin",
        data={
            "csrf_token": (await browser.csrf(first.headers["location"])),
            "email": email,
            "password": "correct horse battery staple",
            "next": parse_qs(urlsplit(first.headers["location"]).query)["next"][0],
        },
    )
    assert signin_page.status_code == 200
    assert signed.status_code == 303 and signed.headers["location"] == path

    consent = await browser.get(path)
    assert consent.status_code == 200
    assert APP in consent.text and "http://127.0.0.1:53682" in consent.text
    assert "form-action 'self' http://127.0.0.1:53682" in consent.headers["content-security-policy"]

    query = callback_query(await approve(browser, challenge, state="xyz 123"))
    assert query["state"] == "xyz 123" and set(query) == {"code", "state"}

    answer = await exchange(app_client, query["code"], verifier)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert answer.headers["cache-control"] == "no-store"
    assert body["token_type"] == "bearer" and body["base_url"] == "http://localhost:4000/v1"
    assert body["token_name"] == APP
    async with db.session() as session:
        identity = await authenticate(session, body["access_token"])
        stored = (await session.scalars(select(ConnectCode))).one()
    assert identity.token_id == body["token_id"]
    assert stored.token_id == body["token_id"] and stored.used_at is not None
    assert stored.code_hash == hashlib.sha256(query["code"].encode()).hexdigest()
    assert query["code"] not in repr(
        [getattr(stored, c.name) for c in ConnectCode.__table__.columns]
    )
    assert outbox.last(email, "token_created")  # the owner hears of the new token

    tokens_page = await browser.get("/tokens")
    row = tokens_page.text.split(f'data-token-id="{body["token_id"]}"')[1].split("</tr>")[0]
    assert APP in row and "connected app" in row
    revoked = await browser.post(
        f"/tokens/{body['token_id']}/revoke", {"confirm": "yes"}, page="/tokens"
    )
    assert revoked.status_code == 303
    async with db.session() as session:
        with pytest.raises(Exception, match="revoked"):
            await authenticate(session, body["access_token"])


async def test_deny_tells_the_app(signed_in: SignedInUser) -> None:
    browser, _user_id, _email = await signed_in()
    _verifier, challenge = pkce()
    query = callback_query(await approve(browser, challenge, decision="deny", state="s1"))
    assert query == {"error": "access_denied", "state": "s1"}


@pytest.mark.parametrize(
    ("callback", "method", "problem"),
    [
        ("http://example.com:8000/cb", "S256", "not allowed"),
        ("http://127.0.0.1.example.com/cb", "S256", "not allowed"),
        ("https://app.example.com/connected", "S256", "not allowed"),  # not listed
        ("http://user@127.0.0.1:8000/cb", "S256", "no user name"),
        ("http://127.0.0.1:8000/cb#x", "S256", "no fragment"),
        ("javascript:alert(1)", "S256", "not allowed"),
        (CALLBACK, "plain", "plain is not accepted"),
        (CALLBACK, "", "S256"),
    ],
)
async def test_refused_requests_are_explained_and_never_redirected(
    signed_in: SignedInUser, callback: str, method: str, problem: str
) -> None:
    browser, _user_id, _email = await signed_in()
    _verifier, challenge = pkce()
    params = {"callback_url": callback, "code_challenge": challenge, "app": APP}
    if method:
        params["code_challenge_method"] = method
    page = await browser.get("/connect?" + urlencode(params))
    assert page.status_code == 400 and problem in page.text
    posted = await browser.post("/connect", {**params, "decision": "approve"})
    assert posted.status_code == 400 and "location" not in posted.headers


@pytest.mark.parametrize(
    "callback", ["http://[::1]:40123/cb", "http://localhost:1/", "http://127.0.0.1:65535/a?b=c"]
)
async def test_every_loopback_form_on_any_port_is_accepted(
    signed_in: SignedInUser, callback: str
) -> None:
    browser, _user_id, _email = await signed_in()
    _verifier, challenge = pkce()
    response = await approve(browser, challenge, callback=callback)
    assert response.status_code == 303
    assert response.headers["location"].startswith(callback)
    assert "code=" in response.headers["location"]


async def test_an_https_callback_the_operator_listed_is_accepted(
    tmp_path: Path, portal_settings: Settings, db: Database, signed_in: SignedInUser
) -> None:
    config = tmp_path / "config.yaml"
    listed = "https_callback_urls: [https://app.example.com/connected]"
    original = (PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8")
    config.write_text(original.replace("https_callback_urls: []", listed), encoding="utf-8")
    settings = portal_settings.model_copy(update={"config_path": config})
    app = create_app(settings, database=db, background_jobs=False)
    _browser, _user_id, email = await signed_in()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=PORTAL_URL) as client:
        browser = Browser(client)
        assert (await browser.sign_in(email)).status_code == 303
        _verifier, challenge = pkce()
        listed = await approve(browser, challenge, callback="https://app.example.com/connected")
        assert listed.headers["location"].startswith("https://app.example.com/connected?code=")
        other = await browser.get(
            connect_path(challenge, callback="https://app.example.com/connected/other")
        )
        assert other.status_code == 400


async def test_a_code_is_refused_with_the_reason(
    signed_in: SignedInUser, app_client: httpx.AsyncClient, db: Database
) -> None:
    browser, _user_id, _email = await signed_in()
    verifier, challenge = pkce()
    code = callback_query(await approve(browser, challenge))["code"]

    async def refused(response: httpx.Response, reason: str) -> None:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_grant"
        assert reason in response.json()["error_description"]

    other_verifier, _ = pkce()
    await refused(await exchange(app_client, code, other_verifier), "code_verifier does not match")
    await refused(
        await exchange(app_client, code, verifier, "http://127.0.0.1:9/elsewhere"),
        "callback_url is not the one",
    )
    await refused(await exchange(app_client, "not-a-code", verifier), "not known")
    assert (await exchange(app_client, code, verifier)).status_code == 200  # still usable
    await refused(await exchange(app_client, code, verifier), "already been exchanged")

    late_verifier, late_challenge = pkce()
    late = callback_query(await approve(browser, late_challenge))["code"]
    async with db.transaction() as session:
        await session.execute(
            update(ConnectCode)
            .where(ConnectCode.used_at.is_(None))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await refused(await exchange(app_client, late, late_verifier), "expired")

    malformed = await app_client.post("/api/v1/connect/token", content=b"code=x")
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_request"
    missing = await app_client.post("/api/v1/connect/token", json={"code": code})
    assert missing.json()["error"] == "invalid_request"
    assert "code_verifier" in missing.json()["error_description"]
    grant = await app_client.post("/api/v1/connect/token", json={"grant_type": "password"})
    assert grant.json()["error"] == "unsupported_grant_type"


async def test_ten_parallel_exchanges_of_one_code_make_exactly_one_token(
    signed_in: SignedInUser, new_browser: NewBrowser, db: Database
) -> None:
    browser, user_id, _email = await signed_in()
    verifier, challenge = pkce()
    code = callback_query(await approve(browser, challenge))["code"]
    clients = [new_browser(f"198.51.100.{30 + i}").client for i in range(10)]

    answers = await asyncio.gather(*(exchange(client, code, verifier) for client in clients))

    assert sorted(a.status_code for a in answers) == [200] + [400] * 9
    assert {a.json()["error"] for a in answers if a.status_code == 400} == {"invalid_grant"}
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(GatewayToken).where(GatewayToken.user_id == user_id)
        )
    assert count == 1


async def test_exchanges_are_rate_limited_per_client(
    signed_in: SignedInUser, app_client: httpx.AsyncClient
) -> None:
    await signed_in()
    verifier, _challenge = pkce()
    answers = [await exchange(app_client, f"guess-{i}", verifier) for i in range(31)]
    assert {a.status_code for a in answers[:30]} == {400}
    assert answers[30].status_code == 429
    assert answers[30].json()["error"] == "too_many_requests"
    assert int(answers[30].headers["retry-after"]) > 0


async def test_the_consent_form_needs_this_browsers_csrf_token(signed_in: SignedInUser) -> None:
    browser, _user_id, _email = await signed_in()
    _verifier, challenge = pkce()
    forged = await browser.client.post(
        "/connect",
        data={
            "callback_url": CALLBACK,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "app": APP,
            "decision": "approve",
        },
    )
    assert forged.status_code == 403 and "location" not in forged.headers

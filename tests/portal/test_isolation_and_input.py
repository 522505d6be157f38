"""User A never reads or changes user B's records through any route; bad input anywhere
gets a message or a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from portal.db import Database
from portal.tokens.models import GatewayToken
from portal.web.routing import iter_routes
from tests.portal.conftest import SignedInUser
from tests.portal.support import PASSWORD, Browser, add_usage, grant

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


async def test_no_route_shows_or_changes_another_users_records(
    app: FastAPI, signed_in: SignedInUser, db: Database
) -> None:
    owner, owner_id, owner_email = await signed_in(name="Owner Person")
    created = (await owner.api("POST", "/api/tokens", json={"name": "owner-token"})).json()
    token_id = created["token"]["id"]
    await grant(db, owner_id, "7.123456")
    call_id = await add_usage(db, owner_id, token_id=token_id)
    secrets_of_owner = [owner_email, "Owner Person", owner_id, token_id, call_id,
                        created["token"]["prefix"], "7.123456"]  # fmt: skip

    intruder, _intruder_id, _email = await signed_in(name="Intruder")
    routes = list(iter_routes(app.routes))
    limit = {"limit": "0.01", "reset": "daily"}  # as the owner's page or API would send it
    for route in routes:
        path = route.path.replace("{token_id}", token_id)
        if "{" in path or path.startswith("/static") or path.endswith("/webhook"):
            continue  # webhooks are signed by their sender, not tied to a session
        if "GET" in route.methods:
            response = await intruder.get(path)
            assert response.status_code < 500, path
            leaked = [s for s in secrets_of_owner if s in response.text]
            assert not leaked, f"GET {path} shows {leaked}"
        for method in sorted(route.methods & UNSAFE):
            if path in ("/account/delete", "/signout", "/account/password", "/account/email"):
                continue  # these act on the intruder's own account (tested elsewhere)
            if method == "DELETE":
                response = await intruder.api(method, path)
            elif method == "POST":
                form = {"name": "x", "email": "z@example.org", **limit}
                response = await intruder.post(path, form)
            else:  # PUT/PATCH: the JSON API
                response = await intruder.api(method, path, json=limit)
            if method in ("PUT", "PATCH") and path.startswith("/api/tokens/"):
                assert response.status_code == 404, (method, path)
            assert response.status_code < 500, (method, path)
            assert not [s for s in secrets_of_owner if s in response.text], (method, path)
    async with db.session() as session:
        token = await session.get(GatewayToken, token_id)
    assert token.revoked_at is None  # neither the page nor the API revoked it
    assert token.limit_units is None  # nor set a spending limit on it
    delete = await intruder.api("DELETE", f"/api/tokens/{token_id}")
    assert delete.status_code == 404
    # the owner still sees their own
    assert call_id in (await owner.get("/usage")).text
    assert token_id in json.dumps((await owner.get("/api/tokens")).json())


async def test_owner_revoke_of_a_foreign_id_is_refused_on_the_page(
    signed_in: SignedInUser, db: Database
) -> None:
    owner, _oid, _oemail = await signed_in()
    token_id = (await owner.api("POST", "/api/tokens", json={"name": "t"})).json()["token"]["id"]
    intruder, _iid, _iemail = await signed_in()
    response = await intruder.post(f"/tokens/{token_id}/revoke")
    assert response.status_code == 303 and "token_not_found" in response.headers["location"]
    async with db.session() as session:
        assert (await session.scalar(select(GatewayToken.revoked_at))) is None


FORMS = {
    "/signup": ["email", "name", "password"],
    "/signin": ["email", "password", "next"],
    "/reset": ["email"],
    "/reset/confirm": ["token", "password"],
    "/tokens": ["name"],
    "/account/password": ["current_password", "new_password"],
    "/account/email": ["new_email", "password"],
    "/account/delete": ["password", "confirm"],
}
BAD_VALUES = [
    "",
    " ",
    "x" * 100_000,
    "\x00",
    "Ω≈ç√∫˜µ≤≥÷ 東京 🚀 \u202e",
    "'; DROP TABLE users; --",
    "<script>alert(1)</script>",
    "a@b",
    "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
]


@pytest.mark.parametrize("path", sorted(FORMS))
async def test_bad_form_input_never_breaks_a_page(signed_in: SignedInUser, path: str) -> None:
    browser, _id, _email = await signed_in()
    fields = FORMS[path]
    cases: list[dict[str, str]] = [{}]  # every field missing
    cases += [{name: value for name in fields} for value in BAD_VALUES]
    for data in cases:
        response = await browser.post(path, data)
        assert response.status_code < 500, (path, data and next(iter(data.values()))[:20])
        assert "<script>alert(1)</script>" not in response.text
    assert await browser.signed_in() or path == "/account/password"


async def test_a_huge_body_is_refused_with_413(signed_in: SignedInUser) -> None:
    browser, _id, _email = await signed_in()
    token = await browser.csrf()
    response = await browser.client.post(
        "/tokens", data={"csrf_token": token, "name": "x" * 2_000_000}
    )
    assert response.status_code == 413
    api = await browser.api("POST", "/api/tokens", content=b"{" + b" " * 2_000_000)
    assert api.status_code == 413 and "detail" in api.json()


@pytest.mark.parametrize(
    "body",
    [
        None,
        "not json",
        "[]",
        '{"name": 5}',
        '{"name": ""}',
        '{"name": "\\u0000"}',
        '{"name": "x", "extra": 1}',
        json.dumps({"name": "y" * 10_000}),
    ],
)
async def test_bad_json_gets_a_4xx_json_error(signed_in: SignedInUser, body: str | None) -> None:
    browser, _id, _email = await signed_in()
    response = await browser.api(
        "POST", "/api/tokens", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=abc", "limit=99999999999999999999", "offset=-1", "from=2025-13-01",
     "from=2025-02-01&to=2025-01-01", "from=%00"],
)  # fmt: skip
async def test_bad_api_query_gets_422(signed_in: SignedInUser, query: str) -> None:
    browser, _id, _email = await signed_in()
    response = await browser.get(f"/api/usage?{query}")
    assert response.status_code == 422 and "detail" in response.json()


@pytest.mark.parametrize(
    "path",
    ["/usage?page=-5", "/usage?page=abc&from=%00", "/dashboard?ledger_page=zz",
     "/verify?token=" + "x" * 5000, "/reset/confirm?token=%00", "/verify", "/signin?next=%00"],
)  # fmt: skip
async def test_odd_page_queries_are_handled(signed_in: SignedInUser, path: str) -> None:
    browser, _id, _email = await signed_in()
    response = await browser.get(path)
    assert response.status_code < 500


async def test_password_with_unicode_works(browser: Browser, outbox, db: Database) -> None:
    password = "pässwörd 東京 🚀 long enough"
    assert (
        await browser.sign_up("uni@example.com", name="Zoë Ñandú", password=password)
    ).status_code == 200
    await browser.get(outbox.last("uni@example.com").link())
    assert (await browser.sign_in("uni@example.com", password)).status_code == 303
    assert "Zoë Ñandú" in (await browser.get("/account")).text
    assert password != PASSWORD

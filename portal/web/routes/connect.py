"""Connecting an app (`docs/connect.md`): the consent page a signed-in person sees, and
the token endpoint the app calls with the code.

    GET  /connect?callback_url=…&code_challenge=…&code_challenge_method=S256&app=…[&state=…]
    POST /connect                  the person's answer (CSRF-checked form): 303 to the
                                   callback with `code` (or `error=access_denied`) and `state`
    POST /api/v1/connect/token     {"code", "code_verifier", "callback_url"} -> the token,
                                   shown once; no cookie, so no CSRF check (the verifier
                                   proves the caller is the app that asked)

A request that fails the checks is explained on the page and never redirected: a
callback is trusted only once it passed them.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from portal.connect import flows
from portal.connect.authorization import (
    ConnectRefused,
    ConnectRequest,
    callback_origin,
    form_action_source,
    parse_connect_request,
    valid_verifier,
)
from portal.connect.service import CODE_LIFETIME, CodeRefused
from portal.errors import RateLimited
from portal.web.deps import (
    CurrentUser,
    DatabaseDep,
    MailerDep,
    PluginSettingsDep,
    SettingsDep,
    SignedIn,
    client_address,
)
from portal.web.forms import FormError, read_form
from portal.web.middleware import csp_with_form_targets
from portal.web.templating import render
from portal.web.token_limits import RESET_CHOICES, spending_limit_from

__all__ = ["pages", "token_api"]

pages = APIRouter(include_in_schema=False)
token_api = APIRouter(prefix="/api/v1/connect", tags=["connect an app"])

_FIELDS = {
    "callback_url": ("callback_url", 2000),
    "code_challenge": ("code_challenge", 200),
    "code_challenge_method": ("code_challenge_method", 20),
    "app": ("app", 200),
    "state": ("state", 500),
    "decision": ("decision", 10),
    "limit": ("Spending limit", 40),
    "reset": ("Reset", 10),
}
_NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}  # RFC 6749 §5.1


def _refused_page(request: Request, viewer: SignedIn, problem: str) -> Response:
    context = {"viewer": viewer, "title": "This app cannot be connected", "text": problem}
    return render(request, "message.html", context, status_code=400)


def _consent_page(
    request: Request,
    viewer: SignedIn,
    asked: ConnectRequest,
    *,
    error: str | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    context = {
        "viewer": viewer,
        "asked": asked,
        "resets": RESET_CHOICES,
        "error": error,
        "typed": typed or {},
        "callback_origin": callback_origin(asked.callback_url),
        "minutes": int(CODE_LIFETIME.total_seconds() // 60),
    }
    page = render(request, "connect.html", context, status_code=400 if error else 200)
    page.headers["content-security-policy"] = csp_with_form_targets(
        form_action_source(asked.callback_url)
    )
    page.headers["cache-control"] = "no-store"
    return page


@pages.get("/connect", name="connect")
async def consent(request: Request, viewer: CurrentUser, plugin: PluginSettingsDep) -> Response:
    params = {key: request.query_params[key] for key in request.query_params}
    try:
        asked = parse_connect_request(params, plugin.connect.https_callback_urls)
    except ConnectRefused as problem:
        return _refused_page(request, viewer, str(problem))
    return _consent_page(request, viewer, asked)


@pages.post("/connect")
async def answer(
    request: Request, viewer: CurrentUser, db: DatabaseDep, plugin: PluginSettingsDep
) -> Response:
    try:
        form = await read_form(request, _FIELDS)
        asked = parse_connect_request(form, plugin.connect.https_callback_urls)
    except (FormError, ConnectRefused) as problem:
        return _refused_page(request, viewer, str(problem))
    if form["decision"] == "approve":
        try:
            limit = spending_limit_from(form["limit"], form["reset"])
        except ValueError as problem:  # asked again, with what was typed
            return _consent_page(request, viewer, asked, error=str(problem), typed=form)
        target = await flows.approve(db, user_id=viewer.user.id, approved=asked, limit=limit)
    else:
        target = flows.deny(asked)
    return RedirectResponse(target, status_code=303, headers=_NO_STORE)


def _oauth_error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers={**_NO_STORE, **headers})


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


@token_api.post(
    "/token",
    responses={
        200: {"description": "The gateway token, shown once"},
        400: {"description": '{"error": "invalid_request" | "invalid_grant", …}'},
        429: {"description": '{"error": "too_many_requests", …}; Retry-After'},
    },
)
async def exchange_code(
    request: Request, db: DatabaseDep, mailer: MailerDep, settings: SettingsDep
) -> Response:
    """Trade the one-time code from the callback, with the PKCE verifier it was made for,
    for a gateway token. JSON in: `code`, `code_verifier`, `callback_url` (as sent to
    /connect); `grant_type` may be given and must then be `authorization_code`."""
    body = await _json_object(request)
    if body is None:
        return _oauth_error(400, "invalid_request", "Send a JSON object.")
    grant_type = body.get("grant_type", "authorization_code")
    if grant_type != "authorization_code":
        return _oauth_error(
            400, "unsupported_grant_type", "Only grant_type authorization_code is accepted."
        )
    fields = {name: body.get(name) for name in ("code", "code_verifier", "callback_url")}
    missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        problem = f"Missing or not a string: {', '.join(missing)}."
        return _oauth_error(400, "invalid_request", problem)
    code, verifier, callback = (str(fields[name]) for name in fields)
    if not valid_verifier(verifier):
        problem = "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~."
        return _oauth_error(400, "invalid_request", problem)
    if len(code) > 200 or len(callback) > 2000:
        return _oauth_error(400, "invalid_grant", "This code is not known here.")
    try:
        connected = await flows.exchange(
            db,
            mailer,
            code=code,
            verifier=verifier,
            callback_url=callback,
            client=client_address(request),
            tokens_url=settings.portal_public_url.rstrip("/") + "/tokens",
        )
    except RateLimited as problem:
        return _oauth_error(
            429, "too_many_requests", problem.message, **{"retry-after": str(problem.retry_after)}
        )
    except CodeRefused as problem:
        return _oauth_error(400, "invalid_grant", str(problem))
    token = connected.token
    answer = {
        "access_token": connected.plaintext,
        "token_type": "bearer",
        "base_url": settings.gateway_public_url.rstrip("/") + "/v1",
        "token_id": token.id,
        "token_name": token.name,
        "token_prefix": token.prefix,
    }
    return JSONResponse(answer, headers=_NO_STORE)

"""The Tokens page: create (redirect after POST; the secret shown once on the next page,
with the base URL for the desktop app), with an optional spending limit; list, with what
each token used of its limit; change a limit; revoke after a confirmation step.

The actions themselves are `tokens.flows`, shared with the JSON API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from portal.connect import service as connect_service
from portal.errors import NotFound
from portal.sessions.flash import put_flash, take_flash
from portal.tokens import flows, spending
from portal.tokens import service as tokens
from portal.web.cookies import browser_secret
from portal.web.deps import CurrentUser, DatabaseDep, MailerDep, SettingsDep, SignedIn
from portal.web.forms import FormError, read_form
from portal.web.templating import render
from portal.web.token_limits import RESET_CHOICES, spending_limit_from

router = APIRouter(include_in_schema=False)

_NEW_TOKEN = "new_token"


async def _page(
    request: Request,
    viewer: SignedIn,
    db: DatabaseDep,
    settings: SettingsDep,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    async with db.session() as session:
        rows = await tokens.list_tokens(session, viewer.user.id)
        apps = await connect_service.connected_apps(session, viewer.user.id)
    now = spending.clock()
    context = {
        "viewer": viewer,
        "tokens": rows,
        "spending": {row.id: spending.spending_from(row, now) for row in rows},
        "resets": RESET_CHOICES,
        "connected_apps": apps,
        "base_url": settings.gateway_public_url.rstrip("/") + "/v1",
        **extra,
    }
    return render(request, "tokens.html", context, status_code=status_code)


@router.get("/tokens", name="tokens")
async def tokens_page(
    request: Request, viewer: CurrentUser, db: DatabaseDep, settings: SettingsDep
) -> Response:
    async with db.transaction() as session:
        flash = await take_flash(
            session, session_id=viewer.session_id, cookie_secret=browser_secret(request)
        )
    shown: dict[str, Any] = {}
    if flash is not None and flash.get("kind") == _NEW_TOKEN:
        shown = {"created_name": flash["name"], "plaintext": flash["secret"]}
    page = await _page(request, viewer, db, settings, **shown)
    page.headers["cache-control"] = "no-store"  # the secret must not be kept by the browser
    return page


@router.post("/tokens")
async def create_token(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
) -> Response:
    try:
        form = await read_form(
            request, {"name": ("Token name", 100), "limit": ("Limit", 40), "reset": ("Reset", 10)}
        )
        limit = spending_limit_from(form["limit"], form["reset"])
    except ValueError as problem:  # FormError included
        return await _page(request, viewer, db, settings, status_code=400, error=str(problem))
    try:
        created = await flows.create_token(
            db,
            mailer,
            user_id=viewer.user.id,
            name=form["name"],
            tokens_url=settings.portal_public_url.rstrip("/") + "/tokens",
            limit=limit,
        )
    except ValueError:
        message = "Give the token a name of 1 to 100 characters."
        return await _page(request, viewer, db, settings, status_code=400, error=message)
    async with db.transaction() as session:
        await put_flash(
            session,
            session_id=viewer.session_id,
            cookie_secret=browser_secret(request),
            message={"kind": _NEW_TOKEN, "name": created.token.name, "secret": created.plaintext},
        )
    return RedirectResponse("/tokens", status_code=303)


@router.post("/tokens/{token_id}/limit", name="token_limit")
async def change_limit(
    request: Request, token_id: str, viewer: CurrentUser, db: DatabaseDep, settings: SettingsDep
) -> Response:
    """Set, change or remove (empty) a token's spending limit; it applies to the next call."""
    try:
        form = await read_form(request, {"limit": ("Limit", 40), "reset": ("Reset", 10)})
        limit = spending_limit_from(form["limit"], form["reset"])
    except ValueError as problem:
        return await _page(request, viewer, db, settings, status_code=400, error=str(problem))
    try:
        await flows.set_limit(db, user_id=viewer.user.id, token_id=token_id, limit=limit)
    except NotFound:
        return RedirectResponse("/tokens?notice=token_not_found", status_code=303)
    return RedirectResponse("/tokens?notice=token_limit_saved", status_code=303)


async def _confirm_page(
    request: Request, viewer: SignedIn, db: DatabaseDep, token_id: str
) -> Response:
    try:
        async with db.session() as session:
            token = await tokens.find_token(session, user_id=viewer.user.id, token_id=token_id[:64])
    except NotFound:
        return RedirectResponse("/tokens?notice=token_not_found", status_code=303)
    if token.revoked_at is not None:
        return RedirectResponse("/tokens?notice=token_revoked", status_code=303)
    return render(request, "token_revoke.html", {"viewer": viewer, "token": token})


@router.get("/tokens/{token_id}/revoke", name="token_revoke")
async def confirm_revoke(
    request: Request, token_id: str, viewer: CurrentUser, db: DatabaseDep
) -> Response:
    return await _confirm_page(request, viewer, db, token_id)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request, token_id: str, viewer: CurrentUser, db: DatabaseDep
) -> Response:
    try:
        confirmed = (await read_form(request, {"confirm": ("Confirmation", 10)}))["confirm"]
    except FormError:
        confirmed = ""
    if confirmed != "yes":  # not yet confirmed (one click, or no JavaScript): ask first
        return await _confirm_page(request, viewer, db, token_id)
    try:
        await flows.revoke_token(db, user_id=viewer.user.id, token_id=token_id)
    except NotFound:
        return RedirectResponse("/tokens?notice=token_not_found", status_code=303)
    return RedirectResponse("/tokens?notice=token_revoked", status_code=303)

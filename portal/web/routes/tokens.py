"""The Tokens page: create (shown once, with the base URL for the desktop app), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from portal.accounts.models import User
from portal.errors import NotFound
from portal.tokens import auth_cache
from portal.tokens import service as tokens
from portal.tokens.flows import create_token_with_notice
from portal.web.deps import CurrentUser, DatabaseDep, MailerDep, SettingsDep
from portal.web.forms import FormError, read_form
from portal.web.templating import render

router = APIRouter(include_in_schema=False)


async def _page(
    request: Request, viewer, db, settings, *, status_code: int = 200, **extra
) -> Response:
    async with db.session() as session:
        rows = await tokens.list_tokens(session, viewer.user.id)
    context = {
        "viewer": viewer,
        "tokens": rows,
        "base_url": settings.gateway_public_url.rstrip("/") + "/v1",
        **extra,
    }
    return render(request, "tokens.html", context, status_code=status_code)


@router.get("/tokens", name="tokens")
async def tokens_page(
    request: Request, viewer: CurrentUser, db: DatabaseDep, settings: SettingsDep
) -> Response:
    return await _page(request, viewer, db, settings)


@router.post("/tokens")
async def create_token(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
) -> Response:
    try:
        form = await read_form(request, {"name": ("Token name", 100)})
        async with db.transaction() as session:
            user = await session.get(User, viewer.user.id)
            plaintext, token, mail = await create_token_with_notice(
                session,
                user,
                name=form["name"],
                tokens_url=settings.portal_public_url.rstrip("/") + "/tokens",
            )
    except (FormError, ValueError) as problem:
        message = str(problem)
        if not isinstance(problem, FormError):
            message = "Give the token a name of 1 to 100 characters."
        return await _page(request, viewer, db, settings, status_code=400, error=message)
    await mailer.send(mail)
    return await _page(request, viewer, db, settings, created=token, plaintext=plaintext)


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(
    token_id: str, viewer: CurrentUser, db: DatabaseDep, settings: SettingsDep
) -> Response:
    try:
        async with db.transaction() as session:
            token = await tokens.revoke_token(
                session, user_id=viewer.user.id, token_id=token_id[:64]
            )
    except NotFound:
        return RedirectResponse("/tokens?notice=token_not_found", status_code=303)
    await auth_cache.invalidate_token(token.token_hash, redis_url=settings.redis_url)
    return RedirectResponse("/tokens?notice=token_revoked", status_code=303)

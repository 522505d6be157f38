"""Account settings: change password or email, export everything, delete the account."""

from __future__ import annotations

from typing import Any

import stripe
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from portal.accounts import flows
from portal.accounts.flows import FlowError, Throttled
from portal.accounts.models import User
from portal.db import Database
from portal.privacy import flows as privacy_flows
from portal.privacy.leftovers import erase_leftovers
from portal.sessions import service as sessions
from portal.web.cookies import clear_browser_secret, replace_browser_secret
from portal.web.deps import (
    CurrentUser,
    DatabaseDep,
    MailerDep,
    SettingsDep,
    SignedIn,
    reload_user,
)
from portal.web.downloads import export_download
from portal.web.forms import FormError, read_form
from portal.web.routes.billing import app_billing
from portal.web.templating import render

router = APIRouter(include_in_schema=False)

_PASSWORD = ("Password", 1024)


async def _page(
    request: Request, viewer: SignedIn, db: Database, *, status_code: int = 200, **extra: Any
) -> Response:
    async with db.session() as session:
        browsers = await sessions.list_sessions(session, viewer.user.id)
    context = {"viewer": viewer, "sessions": browsers, **extra}
    return render(request, "account.html", context, status_code=status_code)


async def _refused(
    request: Request, viewer: SignedIn, db: Database, problem: Exception, field: str
) -> Response:
    """The account page with `problem` shown by the form it concerns (400, or 429 with
    Retry-After when password re-entries are being throttled)."""
    if isinstance(problem, Throttled):
        page = await _page(request, viewer, db, status_code=429, **{field: str(problem)})
        page.headers["retry-after"] = str(problem.retry_after)
        return page
    return await _page(request, viewer, db, status_code=400, **{field: str(problem)})


async def _admit_password_reentry(db: Database, user_id: str) -> None:
    """Count this re-entry of the password, committed before it is checked (Throttled)."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        if user is not None:
            await flows.admit_password_reentry(session, user)


@router.get("/account", name="account")
async def account_page(request: Request, viewer: CurrentUser, db: DatabaseDep) -> Response:
    return await _page(request, viewer, db)


@router.post("/account/password")
async def change_password(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
) -> Response:
    try:
        form = await read_form(request, {"current_password": _PASSWORD, "new_password": _PASSWORD})
        await _admit_password_reentry(db, viewer.user.id)
        async with db.transaction() as session:
            user = await reload_user(session, viewer, next_path="/account")
            mail = await flows.change_password(
                session,
                user,
                current=form["current_password"],
                new=form["new_password"],
                base_url=settings.portal_public_url,
            )
            secret = await sessions.start_session(session, user.id)  # this browser stays in
    except (FormError, FlowError) as problem:
        return await _refused(request, viewer, db, problem, "password_error")
    await mailer.send(mail)
    replace_browser_secret(request, secret, signed_in=True)
    return RedirectResponse("/account?notice=password_changed", status_code=303)


@router.post("/account/email")
async def change_email(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
) -> Response:
    try:
        form = await read_form(request, {"new_email": ("New email", 320), "password": _PASSWORD})
        await _admit_password_reentry(db, viewer.user.id)
        async with db.transaction() as session:
            user = await reload_user(session, viewer, next_path="/account")
            mail = await flows.request_email_change(
                session,
                user,
                password=form["password"],
                new_email=form["new_email"],
                base_url=settings.portal_public_url,
            )
    except (FormError, FlowError) as problem:
        return await _refused(request, viewer, db, problem, "email_error")
    await mailer.send(mail)
    return RedirectResponse("/account?notice=email_change_sent", status_code=303)


@router.get("/account/export", name="account_export")
async def export(viewer: CurrentUser, db: DatabaseDep) -> Response:
    return export_download(await privacy_flows.export_account(db, user_id=viewer.user.id))


@router.post("/account/delete")
async def delete(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    mailer: MailerDep,
) -> Response:
    try:
        form = await read_form(request, {"password": _PASSWORD, "confirm": ("Confirmation", 10)})
        if form["confirm"] != "yes":
            raise FormError("Tick the box to confirm that you want to delete your account.")
        await _admit_password_reentry(db, viewer.user.id)
        deleted = await privacy_flows.delete_account(
            db, app_billing(request.app), user_id=viewer.user.id, password=form["password"]
        )
    except (FormError, FlowError) as problem:
        return await _refused(request, viewer, db, problem, "delete_error")
    except stripe.StripeError:
        return await _page(
            request,
            viewer,
            db,
            status_code=503,
            delete_error="We could not reach our payment provider to cancel your subscription, "
            "so nothing was deleted. Please try again in a few minutes.",
        )
    await mailer.send(deleted.mail)
    await erase_leftovers(db, mailer, deleted.addresses)
    clear_browser_secret(request)
    return render(request, "deleted.html")

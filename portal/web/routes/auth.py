"""Sign up, verify, sign in and out, password reset: the pages before an account is in use.

Mail that anyone can trigger (sign-up, reset) is prepared and delivered after the answer
has gone (`BackgroundTasks`), so the answer takes the same time whether or not the
address has an account; only the per-client limit is decided before answering.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import RedirectResponse, Response

from portal.accounts import flows
from portal.accounts.flows import FlowError, SignInRefused, Throttled
from portal.accounts.models import User
from portal.db import Database
from portal.email.service import Mailer
from portal.sessions import service as sessions
from portal.web.cookies import browser_secret, clear_browser_secret, replace_browser_secret
from portal.web.deps import (
    CurrentUser,
    DatabaseDep,
    MailerDep,
    MaybeUser,
    SettingsDep,
    client_address,
)
from portal.web.forms import FormError, read_form
from portal.web.templating import render

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

_EMAIL = ("Email", 320)
_NAME = ("Name", 200)
_PASSWORD = ("Password", 1024)


def _safe_next(target: str | None) -> str:
    """Only local paths (never //host or a scheme) are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/dashboard"


def _too_many(response: Response, problem: Throttled | SignInRefused) -> Response:
    response.headers["retry-after"] = str(problem.retry_after)
    return response


@router.get("/")
async def home(viewer: MaybeUser) -> RedirectResponse:
    return RedirectResponse("/dashboard" if viewer else "/signin", status_code=303)


@router.get("/signup", name="signup")
async def signup_page(request: Request, viewer: MaybeUser) -> Response:
    if viewer:
        return RedirectResponse("/dashboard", status_code=303)
    return render(request, "signup.html", {"form": {}})


@router.post("/signup")
async def signup(
    request: Request,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    form: dict[str, str] = {}
    try:
        form = await read_form(request, {"email": _EMAIL, "name": _NAME, "password": _PASSWORD})
        async with db.transaction() as session:
            await flows.admit_mail_request(session, client=client_address(request))
        async with db.transaction() as session:
            mail = await flows.sign_up(
                session,
                email=form["email"],
                name=form["name"],
                password=form["password"],
                base_url=settings.portal_public_url,
            )
    except (FormError, FlowError) as problem:
        form.pop("password", None)
        context = {"form": form, "error": str(problem)}
        if isinstance(problem, Throttled):
            return _too_many(render(request, "signup.html", context, status_code=429), problem)
        return render(request, "signup.html", context, status_code=400)
    background.add_task(mailer.send, mail)
    return render(request, "check_email.html", {"purpose": "signup"})


@router.get("/verify", name="verify")
async def verify(
    request: Request, db: DatabaseDep, mailer: MailerDep, viewer: MaybeUser
) -> Response:
    secret = request.query_params.get("token", "")
    try:
        async with db.transaction() as session:
            _user, mail = await flows.confirm_email_link(session, secret)
    except FlowError as problem:
        return render(
            request,
            "message.html",
            {"title": "Link not valid", "text": str(problem), "viewer": viewer},
            status_code=400,
        )
    await mailer.send(mail)
    return render(request, "verified.html", {"viewer": viewer})


@router.post("/verify/resend")
async def resend_verification(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
) -> Response:
    async with db.transaction() as session:
        user = await session.get(User, viewer.user.id)
        mail = (
            []
            if user is None
            else await flows.resend_verification(session, user, base_url=settings.portal_public_url)
        )
    await mailer.send(mail)
    return RedirectResponse("/dashboard?notice=verification_sent", status_code=303)


@router.get("/signin", name="signin")
async def signin_page(request: Request, viewer: MaybeUser) -> Response:
    if viewer:
        return RedirectResponse("/dashboard", status_code=303)
    browser_secret(request)
    return render(request, "signin.html", {"next": request.query_params.get("next", "")})


@router.post("/signin")
async def signin(request: Request, db: DatabaseDep) -> Response:
    try:
        form = await read_form(
            request, {"email": _EMAIL, "password": _PASSWORD, "next": ("Next", 2000)}
        )
    except FormError as problem:
        return render(request, "signin.html", {"error": str(problem)}, status_code=400)
    refused: SignInRefused | None = None
    client = client_address(request)
    try:
        async with db.transaction() as session:  # the attempt counts before it is checked
            await flows.admit_sign_in(session, email=form["email"], client=client)
        async with db.transaction() as session:
            user = await flows.sign_in(
                session, email=form["email"], password=form["password"], client=client
            )
            secret = await sessions.start_session(session, user.id)
            old = request.scope["state"].get("wfg_secret")
            if old:  # rotation: whatever session the old cookie named ends here
                await sessions.end_session(session, old)
    except SignInRefused as problem:
        refused = problem
    if refused is not None:
        context = {"error": str(refused), "email": form["email"], "next": form["next"]}
        response = render(
            request, "signin.html", context, status_code=429 if refused.retry_after else 400
        )
        if refused.retry_after:
            response.headers["retry-after"] = str(refused.retry_after)
        return response
    replace_browser_secret(request, secret, signed_in=True)
    return RedirectResponse(_safe_next(form["next"]), status_code=303)


@router.post("/signout", name="signout")
async def signout(request: Request, db: DatabaseDep) -> RedirectResponse:
    secret = request.scope["state"].get("wfg_secret")
    if secret:
        async with db.transaction() as session:
            await sessions.end_session(session, secret)
    clear_browser_secret(request)
    return RedirectResponse("/signin?notice=signed_out", status_code=303)


@router.get("/reset", name="reset")
async def reset_page(request: Request) -> Response:
    return render(request, "reset_request.html")


@router.post("/reset")
async def reset_request(
    request: Request,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    try:
        form = await read_form(request, {"email": _EMAIL})
        async with db.transaction() as session:
            await flows.admit_mail_request(session, client=client_address(request))
    except FormError as problem:
        return render(request, "reset_request.html", {"error": str(problem)}, status_code=400)
    except Throttled as problem:
        page = render(request, "reset_request.html", {"error": str(problem)}, status_code=429)
        return _too_many(page, problem)
    # Whether the address has an account shows in neither the answer nor its timing.
    background.add_task(_mail_reset_link, db, mailer, form["email"], settings.portal_public_url)
    return render(request, "check_email.html", {"purpose": "reset"})


async def _mail_reset_link(db: Database, mailer: Mailer, email: str, base_url: str) -> None:
    try:
        async with db.transaction() as session:
            mail = await flows.request_password_reset(session, email=email, base_url=base_url)
    except Exception as exc:  # after the answer: log the kind of failure, never the address
        log.error("password reset mail not prepared: %s", type(exc).__name__)
        return
    await mailer.send(mail)


@router.get("/reset/confirm", name="reset_confirm")
async def reset_confirm_page(request: Request) -> Response:
    return render(request, "reset_confirm.html", {"token": request.query_params.get("token", "")})


@router.post("/reset/confirm")
async def reset_confirm(
    request: Request, db: DatabaseDep, mailer: MailerDep, settings: SettingsDep
) -> Response:
    form: dict[str, str] = {}
    try:
        form = await read_form(request, {"token": ("Link", 200), "password": _PASSWORD})
        async with db.transaction() as session:
            _user, mail = await flows.reset_password(
                session,
                secret=form["token"],
                password=form["password"],
                base_url=settings.portal_public_url,
            )
    except (FormError, FlowError) as problem:
        return render(
            request,
            "reset_confirm.html",
            {"token": form.get("token", ""), "error": str(problem)},
            status_code=400,
        )
    await mailer.send(mail)
    clear_browser_secret(request)
    return RedirectResponse("/signin?notice=password_reset", status_code=303)

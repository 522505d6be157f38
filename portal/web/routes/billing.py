"""Billing routes (the views of `portal.billing`): the Billing page, Checkout (start,
success, cancel), the Billing Portal button, the auto top-up settings page, and Stripe's
webhook endpoint.

`router` carries both: the pages with the portal's CSRF check, the webhook without it
(Stripe cannot send a CSRF token; the signature is its proof), so app.py includes it
with one line.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlsplit

import stripe
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from portal.billing import auto_top_up, flows, service, webhooks
from portal.billing.runtime import Billing, BillingNotConfigured, build_billing
from portal.credits import ledger, top_up_settings
from portal.credits.units import UNITS_PER_CREDIT
from portal.errors import NotFound
from portal.web.deps import CurrentUser, DatabaseDep, MailerDep, require_csrf
from portal.web.forms import FormError, read_form
from portal.web.middleware import csp_with_form_targets
from portal.web.templating import render

__all__ = ["app_billing", "router"]

log = logging.getLogger(__name__)

pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_csrf)])
webhook = APIRouter(include_in_schema=False)

STRIPE_PAGE_ORIGINS = ("https://checkout.stripe.com", "https://billing.stripe.com")
WEBHOOK_MAX_BYTES = 256 * 1024


def app_billing(app: FastAPI) -> Billing:
    """This app's billing context, built on first use from the app's settings."""
    billing = getattr(app.state, "billing", None)
    if billing is None:
        billing = app.state.billing = build_billing(app.state.settings)
    return billing


def _billing(request: Request) -> Billing:
    return app_billing(request.app)


BillingDep = Annotated[Billing, Depends(_billing)]


def _page_csp(billing: Billing) -> str:
    """Let this page's forms continue to Stripe's hosted pages (browsers
    check `form-action` on the redirect a form submission gets)."""
    origins = " ".join(STRIPE_PAGE_ORIGINS)
    api_base = billing.stripe_gateway.api_base if billing.stripe_gateway else None
    if api_base:  # a Stripe stand-in (tests, staging) serves its pages itself
        parts = urlsplit(api_base)
        origins = f"{parts.scheme}://{parts.netloc}"
    return csp_with_form_targets(origins)


async def _billing_page(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    billing: Billing,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    async with db.session() as session:
        account = await service.get_account(session, viewer.user.id)
        balance = await ledger.balance(session, viewer.user.id)
        top_up = await top_up_settings.get(session, viewer.user.id)
    catalog = billing.catalog
    plan = catalog.plans.get(account.plan) if account and account.plan else None
    response = render(
        request,
        "billing/billing.html",
        {
            "viewer": viewer,
            "enabled": billing.enabled,
            "account": account,
            "plan": plan,
            "live": service.has_live_subscription(account),
            "plans": catalog.plans,
            "packs": catalog.packs,
            "balance": balance,
            "billing_notice": request.query_params.get("billing_notice"),
            "error": error,
            "auto_top_up_offered": catalog.auto_top_up.enabled,
            "auto_top_up": top_up,
        },
        status_code=status_code,
    )
    response.headers["content-security-policy"] = _page_csp(billing)
    return response


@pages.get("/billing", name="billing")
async def billing_page(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    billing: BillingDep,
) -> Response:
    return await _billing_page(request, viewer, db, billing)


def _unavailable(request: Request, viewer: CurrentUser) -> Response:
    return render(
        request,
        "message.html",
        {
            "viewer": viewer,
            "title": "Stripe is not answering",
            "text": "We could not reach our payment provider. Nothing was charged; please try "
            "again in a minute.",
        },
        status_code=503,
    )


@pages.post("/billing/checkout")
async def start_checkout(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    billing: BillingDep,
) -> Response:
    try:
        form = await read_form(request, {"kind": ("Kind", 10), "item": ("Item", 64)})
        url = await flows.start_checkout(
            db,
            billing,
            user_id=viewer.user.id,
            email=viewer.user.email,
            kind=form["kind"],
            item_id=form["item"],
        )
    except (FormError, NotFound):
        return await _billing_page(
            request, viewer, db, billing, status_code=400, error="No such plan or credit pack."
        )
    except (flows.CheckoutRefused, BillingNotConfigured) as refused:
        return await _billing_page(
            request, viewer, db, billing, status_code=409, error=str(refused)
        )
    except stripe.StripeError as exc:
        log.warning("checkout start failed: %s", type(exc).__name__)
        return _unavailable(request, viewer)
    return RedirectResponse(url, status_code=303)


@pages.post("/billing/portal")
async def open_portal(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    billing: BillingDep,
) -> Response:
    try:
        url = await flows.open_portal(db, billing, user_id=viewer.user.id)
    except (NotFound, BillingNotConfigured) as refused:
        return await _billing_page(
            request, viewer, db, billing, status_code=409, error=str(refused)
        )
    except stripe.StripeError as exc:
        log.warning("billing portal failed: %s", type(exc).__name__)
        return _unavailable(request, viewer)
    return RedirectResponse(url, status_code=303)


@pages.get("/billing/success", name="billing_success")
async def checkout_success(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    billing: BillingDep,
) -> Response:
    """Stripe sends the buyer here after paying; fulfil now rather than wait for the webhook."""
    session_id = request.query_params.get("session_id", "")
    try:
        result = await flows.fulfil_redirect(
            db, billing, user_id=viewer.user.id, session_id=session_id
        )
    except (NotFound, BillingNotConfigured):
        return render(
            request,
            "message.html",
            {"viewer": viewer, "title": "No such checkout", "text": "There is no such payment."},
            status_code=404,
        )
    except stripe.StripeError as exc:
        log.warning("checkout success read failed: %s", type(exc).__name__)
        return _unavailable(request, viewer)
    async with db.session() as session:
        balance = await ledger.balance(session, viewer.user.id)
        account = await service.get_account(session, viewer.user.id)
    return render(
        request,
        "billing/success.html",
        {"viewer": viewer, "result": result, "balance": balance, "account": account},
    )


@pages.get("/billing/cancel", name="billing_cancel")
async def checkout_cancel(viewer: CurrentUser) -> Response:
    """Stripe sends the buyer here on "back"/cancel: the Billing page, saying so."""
    return RedirectResponse("/billing?billing_notice=canceled", status_code=303)


async def _auto_top_up_page(
    request: Request,
    viewer: CurrentUser,
    db: DatabaseDep,
    billing: Billing,
    *,
    status_code: int = 200,
    error: str | None = None,
    saved: bool = False,
) -> Response:
    async with db.session() as session:
        setting = await top_up_settings.get(session, viewer.user.id)
        attempt = await auto_top_up.last_attempt(session, viewer.user.id)
        account = await service.get_account(session, viewer.user.id)
        balance = await ledger.balance(session, viewer.user.id)
    bounds = billing.catalog.auto_top_up
    return render(
        request,
        "billing/auto_top_up.html",
        {
            "viewer": viewer,
            "offered": billing.enabled and bounds.enabled,
            "bounds": bounds,
            "setting": setting,
            "threshold": (setting.threshold_units // UNITS_PER_CREDIT)
            if setting
            else bounds.min_threshold_credits,
            "amount": (setting.amount_units // UNITS_PER_CREDIT)
            if setting
            else bounds.min_amount_credits,
            "attempt": attempt,
            "account": account,
            "balance": balance,
            "error": error,
            "saved": saved,
        },
        status_code=status_code,
    )


@pages.get("/billing/auto-top-up", name="auto_top_up")
async def auto_top_up_page(
    request: Request, viewer: CurrentUser, db: DatabaseDep, billing: BillingDep
) -> Response:
    saved = request.query_params.get("saved") == "1"
    return await _auto_top_up_page(request, viewer, db, billing, saved=saved)


def _whole(text: str, label: str) -> int:
    value = text.strip()
    if not value.isdigit() or len(value) > 9:
        raise FormError(f"{label} must be a whole number of credits.")
    return int(value)


@pages.post("/billing/auto-top-up")
async def save_auto_top_up(
    request: Request, viewer: CurrentUser, db: DatabaseDep, billing: BillingDep
) -> Response:
    try:
        form = await read_form(
            request,
            {"enabled": ("Enabled", 3), "threshold": ("Threshold", 12), "amount": ("Amount", 12)},
        )
        choice = auto_top_up.Choice(
            enabled=form["enabled"] == "on",
            threshold_credits=_whole(form["threshold"], "The threshold"),
            amount_credits=_whole(form["amount"], "The amount"),
        )
        if choice.enabled and not billing.enabled:
            raise auto_top_up.InvalidChoice("Auto top-up is not offered on this server.")
        async with db.transaction() as session:
            await auto_top_up.save_choice(
                session, viewer.user.id, choice, billing.catalog.auto_top_up
            )
    except (FormError, auto_top_up.InvalidChoice) as refused:
        return await _auto_top_up_page(
            request, viewer, db, billing, status_code=400, error=str(refused)
        )
    return RedirectResponse("/billing/auto-top-up?saved=1", status_code=303)


@webhook.post("/stripe/webhook")
async def stripe_webhook(
    request: Request, db: DatabaseDep, billing: BillingDep, mailer: MailerDep
) -> Response:
    payload = await request.body()
    if len(payload) > WEBHOOK_MAX_BYTES:
        return JSONResponse({"error": "too large"}, status_code=413)
    try:
        event = webhooks.verify(billing, payload, request.headers.get("stripe-signature"))
    except webhooks.InvalidWebhook as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except BillingNotConfigured:
        return JSONResponse({"error": "webhooks are not configured"}, status_code=503)
    try:
        outcome = await webhooks.handle_event(db, billing, event, mailer=mailer)
    except webhooks.MalformedEvent as exc:
        # Signed but unusable: a 4xx (not a 500) tells Stripe the fault is the event's.
        log.warning("stripe event %s refused: %s", event["id"], exc)
        return JSONResponse({"error": str(exc)}, status_code=400)
    except (stripe.StripeError, BillingNotConfigured) as exc:
        # Stripe delivers again later; nothing was written.
        log.warning("stripe event %s not applied: %s", event["id"], type(exc).__name__)
        return JSONResponse({"error": "try again"}, status_code=503)
    log.info("stripe event %s (%s): %s", event["id"], event["type"], outcome)
    return JSONResponse({"received": True, "outcome": outcome})


router = APIRouter()
router.include_router(pages)
router.include_router(webhook)

"""Jinja2 set-up: templates, filters, and the globals every page uses (CSRF token, nav)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from portal.credits.units import format_units
from portal.web.amounts import screen_credits, screen_usd, usd_rate
from portal.web.cookies import csrf_token
from portal.web.deps import plugin_settings
from portal.web.routing import iter_routes

__all__ = ["render", "templates"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def _datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _nav_items(request: Request) -> list[tuple[str, str]]:
    """The menu; a section appears when its route is mounted (billing adds itself by
    naming its page route `billing`)."""
    names = {route.name for route in iter_routes(request.app.routes)}
    items = [("Dashboard", "dashboard"), ("Usage", "usage"), ("Tokens", "tokens")]
    if "billing" in names:
        items.append(("Billing", "billing"))
    items.append(("Account", "account"))
    return [(label, request.url_for(name).path) for label, name in items]


def _billing_available(request: Request) -> bool:
    """Whether people can buy credits here (Stripe is configured) or an operator grants them."""
    return bool(request.app.state.settings.stripe_secret_key)


def _usd(request: Request, units: int) -> str:
    """ "$0.0042" where the operator gave credits a dollar rate, else ""."""
    rate = usd_rate(plugin_settings(request))
    return screen_usd(units, rate) if rate is not None else ""


def _how_to_get_credits(request: Request) -> str:
    """The operator's own words on getting credits here (config.yaml), or ""."""
    return plugin_settings(request).billing.how_to_get_credits


templates.env.filters["credits"] = screen_credits  # pages: at most 4 significant decimals
templates.env.filters["exact_credits"] = format_units
templates.env.filters["when"] = _datetime
templates.env.globals["csrf_token"] = csrf_token
templates.env.globals["nav_items"] = _nav_items
templates.env.globals["billing_available"] = _billing_available
templates.env.globals["usd"] = _usd
templates.env.globals["how_to_get_credits"] = _how_to_get_credits


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"viewer": None, **(context or {})}, status_code=status_code
    )

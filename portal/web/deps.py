"""Dependencies every route uses, as `Annotated` aliases: the database, the signed-in
person (pages redirect to sign-in, the API answers 401), and the CSRF check that
routers apply where they are included."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.accounts.models import User
from portal.config import ConfigError, load_plugin_settings
from portal.config.plugin_settings import PluginSettings
from portal.db import Database
from portal.email.service import Mailer
from portal.sessions.service import resolve_session
from portal.settings import Settings
from portal.web.cookies import csrf_valid

__all__ = [
    "ApiUser",
    "CurrentUser",
    "DatabaseDep",
    "MailerDep",
    "MaybeUser",
    "PluginSettingsDep",
    "SettingsDep",
    "SignInRequired",
    "SignedIn",
    "client_address",
    "plugin_settings",
    "reload_user",
    "require_csrf",
]

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedIn:
    """The person behind this request. `user` is detached: reload it to change it."""

    user: User
    session_id: str


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class CsrfRefused(Exception):
    pass


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _mailer(request: Request) -> Mailer:
    mailer: Mailer = request.app.state.mailer
    return mailer


def plugin_settings(request: Request) -> PluginSettings:
    """config.yaml's `workforce_gateway:` section, read on first use (the defaults, with a
    warning, when the file is unusable: `gateway-admin config check` says why)."""
    plugin: PluginSettings | None = getattr(request.app.state, "plugin_settings", None)
    if plugin is None:
        try:
            plugin = load_plugin_settings(_settings(request).config_path)
        except ConfigError as exc:
            log.warning("config.yaml unusable, portal uses defaults: %s", exc)
            plugin = PluginSettings()
        request.app.state.plugin_settings = plugin
    return plugin


DatabaseDep = Annotated[Database, Depends(_database)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MailerDep = Annotated[Mailer, Depends(_mailer)]
PluginSettingsDep = Annotated[PluginSettings, Depends(plugin_settings)]


async def _maybe_user(request: Request, db: DatabaseDep) -> SignedIn | None:
    secret = request.scope.get("state", {}).get("wfg_secret")
    if not secret or request.scope["state"].get("wfg_cookie"):
        return None
    async with db.transaction() as session:
        web_session = await resolve_session(session, secret)
        user = await accounts.get_by_id(session, web_session.user_id) if web_session else None
    if web_session is None or user is None:
        return None
    return SignedIn(user=user, session_id=web_session.id)


MaybeUser = Annotated[SignedIn | None, Depends(_maybe_user)]


async def _page_user(request: Request, viewer: MaybeUser) -> SignedIn:
    if viewer is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        raise SignInRequired(quote(target, safe="/"))  # `&` too: /connect has several
    return viewer


async def _api_user(viewer: MaybeUser) -> SignedIn:
    if viewer is None:
        raise HTTPException(401, "Sign in first: this API uses the portal's session cookie.")
    return viewer


CurrentUser = Annotated[SignedIn, Depends(_page_user)]
ApiUser = Annotated[SignedIn, Depends(_api_user)]


async def reload_user(session: AsyncSession, viewer: SignedIn, *, next_path: str) -> User:
    """`viewer`'s row in `session`, to change it. An account deleted since this request
    was signed in (in another tab) has signed its person out: SignInRequired."""
    user = await session.get(User, viewer.user.id)
    if user is None:
        raise SignInRequired(next_path)
    return user


def client_address(request: Request) -> str:
    """The client as uvicorn saw it: behind a proxy listed in FORWARDED_ALLOW_IPS, the
    address that proxy forwarded (X-Forwarded-For); otherwise the connection's peer."""
    return request.client.host if request.client else "unknown"


async def require_csrf(request: Request) -> None:
    """Refuse a state-changing request without the CSRF token of this browser (form field
    `csrf_token` or header `X-CSRF-Token`)."""
    if request.method in SAFE_METHODS:
        return
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf_token")
            presented = value if isinstance(value, str) else None
    if not csrf_valid(request, presented):
        raise CsrfRefused

"""The one essential cookie: the browser's secret, and the CSRF token derived from it.

Every browser that sees a form gets a random secret in the cookie (HttpOnly,
SameSite=Lax, Secure unless the portal's public URL is on localhost). Signing in
replaces it with a new secret whose hash is a `web_sessions` row (rotation); signing out
replaces it again. The CSRF token is a one-way digest of the secret: a page can embed it,
another site cannot compute it, and it changes whenever the secret does.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from portal.sessions.service import SESSION_LIFETIME, new_session_secret

__all__ = [
    "CookiePolicy",
    "browser_secret",
    "clear_browser_secret",
    "csrf_token",
    "csrf_valid",
    "replace_browser_secret",
]

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class CookiePolicy:
    name: str
    secure: bool

    @classmethod
    def for_public_url(cls, public_url: str) -> CookiePolicy:
        host = (urlsplit(public_url).hostname or "").lower()
        if host in _LOCAL_HOSTS:
            return cls(name="wfg_session", secure=False)
        # __Host- cookies must be Secure, Path=/ and have no Domain: no subdomain can set one.
        return cls(name="__Host-wfg_session", secure=True)

    def header(self, value: str, *, max_age: int | None) -> str:
        parts = [f"{self.name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)


def browser_secret(request: Request) -> str:
    """The browser's cookie secret, creating one (set on the response) if it has none."""
    state = request.scope.setdefault("state", {})
    secret: str | None = state.get("wfg_secret")
    if not secret:
        secret = new_session_secret()
        state["wfg_secret"] = secret
        state["wfg_cookie"] = (secret, None)
    return secret


def replace_browser_secret(request: Request, secret: str, *, signed_in: bool) -> None:
    state = request.scope.setdefault("state", {})
    state["wfg_secret"] = secret
    state["wfg_cookie"] = (secret, int(SESSION_LIFETIME.total_seconds()) if signed_in else None)


def clear_browser_secret(request: Request) -> None:
    replace_browser_secret(request, new_session_secret(), signed_in=False)


def csrf_token(request: Request) -> str:
    secret = browser_secret(request)
    return hashlib.sha256(f"csrf:{secret}".encode()).hexdigest()


def csrf_valid(request: Request, presented: str | None) -> bool:
    secret = request.scope.get("state", {}).get("wfg_secret")
    if not secret or not presented or request.scope["state"].get("wfg_cookie"):
        return False  # no cookie came with the request (a fresh secret cannot be known)
    expected = hashlib.sha256(f"csrf:{secret}".encode()).hexdigest()
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))

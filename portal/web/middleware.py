"""ASGI middleware: the session cookie, security headers, and a request size limit."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal.web.cookies import CookiePolicy

__all__ = ["BodySizeLimit", "BrowserCookie", "SecurityHeaders", "csp_with_form_targets"]

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def csp_with_form_targets(origins: str) -> str:
    """The site CSP, letting a page's forms continue to `origins` (space-separated):
    browsers check `form-action` on the redirect a form submission gets too."""
    return CSP.replace("form-action 'self'", f"form-action 'self' {origins}")


HSTS = "max-age=63072000; includeSubDomains"


class BrowserCookie:
    """Reads the cookie secret into `scope["state"]` and writes back a new or replaced one."""

    def __init__(self, app: ASGIApp, policy: CookiePolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["wfg_secret"] = self._read(scope)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and state.get("wfg_cookie"):
                value, max_age = state["wfg_cookie"]
                MutableHeaders(scope=message).append(
                    "set-cookie", self.policy.header(value, max_age=max_age)
                )
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _read(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"cookie":
                try:
                    jar = SimpleCookie(value.decode("latin-1"))
                except CookieError:
                    continue
                morsel = jar.get(self.policy.name)
                if morsel and 20 <= len(morsel.value) <= 100:
                    return morsel.value
        return None


class SecurityHeaders:
    """Headers on every response. `hsts` (production): browsers then refuse plain HTTP to
    this host for two years, so a network attacker cannot strip TLS from the next visit."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CSP)  # a page may widen it
                headers["x-frame-options"] = "DENY"
                headers["referrer-policy"] = "same-origin"
                headers["x-content-type-options"] = "nosniff"
                headers["cross-origin-opener-policy"] = "same-origin"
                headers["permissions-policy"] = "camera=(), microphone=(), geolocation=()"
                if self.hsts:
                    headers["strict-transport-security"] = HSTS
                if not scope["path"].startswith("/static/"):
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes with 413 (declared or actually sent)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = "The request is too large."
        if scope["path"].startswith("/api/"):
            response: Response = JSONResponse({"detail": text}, status_code=413)
        else:
            response = PlainTextResponse(text, status_code=413)
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass

"""A scripted browser for the portal (httpx against the ASGI app), the mail outbox, and
signing in with Chromium."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
_LINK = re.compile(r"https?://\S+")


@dataclass
class Mail:
    to: str
    subject: str
    kind: str
    text: str

    def link(self) -> str:
        """The first link in the message, as a path with its query."""
        url = httpx.URL(_LINK.search(self.text).group(0))
        return url.raw_path.decode()


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def all(self) -> list[Mail]:
        if not self.directory.exists():
            return []
        mails = []
        for path in sorted(self.directory.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            mails.append(
                Mail(
                    to=str(message["To"]),
                    subject=str(message["Subject"]),
                    kind=str(message["X-WFG-Kind"]),
                    text=message.get_content(),
                )
            )
        return mails

    def to(self, address: str, kind: str | None = None) -> list[Mail]:
        return [m for m in self.all() if m.to == address and (kind is None or m.kind == kind)]

    def last(self, address: str, kind: str | None = None) -> Mail:
        found = self.to(address, kind)
        assert found, (
            f"no {kind or ''} mail to {address}; outbox has {[m.kind for m in self.all()]}"
        )
        return found[-1]


class Browser:
    """One browser: keeps its cookie, reads CSRF tokens from pages like a form would."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def csrf(self, path: str = "/reset") -> str:
        response = await self.client.get(path)
        match = _CSRF.search(response.text)
        assert match, f"no CSRF token on {path} ({response.status_code})"
        return match.group(1)

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(self, path: str, data: dict | None = None, *, page: str | None = None):
        """Submit a form the way the page would (with this browser's CSRF token)."""
        token = await self.csrf(page or "/reset")
        return await self.client.post(path, data={"csrf_token": token, **(data or {})})

    async def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        me = await self.client.get("/api/me")
        headers = dict(kwargs.pop("headers", None) or {})
        if me.status_code == 200:
            headers["x-csrf-token"] = me.json()["csrf_token"]
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def signed_in(self) -> bool:
        return (await self.client.get("/api/me")).status_code == 200

    async def sign_up(self, email: str, name: str = "Ada Lovelace", password: str = PASSWORD):
        return await self.post("/signup", {"email": email, "name": name, "password": password})

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.post("/signin", {"email": email, "password": password})

    def cookie(self) -> str | None:
        return self.client.cookies.get("wfg_session")


async def add_usage(db, user_id: str, *, token_id: str | None = None, credits: int = 1234,
                    when=None, model: str = "gpt-4.1-nano", prompt_tokens: int = 11,
                    completion_tokens: int = 7) -> str:  # fmt: skip
    """Settle one finished call for `user_id` the way the gateway does; returns its call id."""
    import uuid
    from datetime import timedelta

    from portal.db.base import utcnow
    from portal.usage.settlement import FinishedCall, settle_call

    started = when or utcnow()
    call = FinishedCall(
        call_id=f"call-{uuid.uuid4().hex}",
        user_id=user_id,
        token_id=token_id,
        model=model,
        status="success",
        started_at=started,
        ended_at=started + timedelta(seconds=1),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        credits=credits,
        http_status=200,
    )
    async with db.transaction() as session:
        await settle_call(session, call)
    return call.call_id


async def grant(db, user_id: str, credits: str) -> None:
    import uuid

    from portal.credits import ledger
    from portal.credits.models import CauseType, EntryKind
    from portal.credits.units import credits_to_units

    async with db.transaction() as session:
        await ledger.post_entry(
            session,
            user_id=user_id,
            amount=credits_to_units(credits),
            kind=EntryKind.GRANT,
            cause_type=CauseType.ADMIN,
            cause_id=f"grant-{uuid.uuid4()}",
            note="test grant",
        )


CONNECT_CALLBACK = "http://127.0.0.1:53682/callback"


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge, made as an app makes them (RFC 7636)."""
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def exchange(client: httpx.AsyncClient, code: str, verifier: str,
                   callback: str = CONNECT_CALLBACK) -> httpx.Response:  # fmt: skip
    """The app's exchange of a connect code for a token (no cookie needed)."""
    body = {"code": code, "code_verifier": verifier, "callback_url": callback}
    return await client.post("/api/v1/connect/token", json=body)


async def sign_in_with_chromium(page: Any, email: str, password: str = PASSWORD) -> None:
    """Sign in on the portal's own /signin page (a Playwright page with the portal as its
    base URL) and wait for the dashboard."""
    await page.goto("/signin")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("main button[type=submit]")
    await page.wait_for_url("**/dashboard")

"""A one-time message for a browser's next page, kept server-side in its session row.

Redirect-after-POST needs somewhere to keep what the next page shows once (a new token's
secret) that is neither the URL nor a second cookie. The message is sealed with a key
derived from the browser's cookie secret, which the server never stores (the session row
keeps only its hash), so a database reader cannot open it; it is read at most once and
refused when older than `FLASH_LIFETIME`. Callers own the transaction.

Sealing uses only the standard library: an HMAC-SHA256 keystream (counter mode) XORed
with the message, then an HMAC-SHA256 tag over nonce and ciphertext (encrypt-then-MAC).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.base import utcnow
from portal.db.upsert import affected_rows
from portal.sessions.models import WebSession

__all__ = ["FLASH_LIFETIME", "put_flash", "take_flash"]

FLASH_LIFETIME = timedelta(minutes=10)
_NONCE = 16
_TAG = 32


async def put_flash(
    session: AsyncSession, *, session_id: str, cookie_secret: str, message: dict[str, str]
) -> None:
    """Keep `message` for this browser's next `take_flash` (replacing any unread one)."""
    body = json.dumps({"at": utcnow().timestamp(), "m": message}, separators=(",", ":"))
    await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id)
        .values(flash_sealed=_seal(cookie_secret, body.encode("utf-8")))
    )


async def take_flash(
    session: AsyncSession, *, session_id: str, cookie_secret: str
) -> dict[str, str] | None:
    """The waiting message, removed as it is read (a second read, or a parallel one, gets
    None); None too when there is none, it is stale, or this cookie cannot open it."""
    sealed = await session.scalar(
        select(WebSession.flash_sealed).where(WebSession.id == session_id)
    )
    if sealed is None:
        return None
    taken = await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.flash_sealed == sealed)
        .values(flash_sealed=None)
    )
    if affected_rows(taken) != 1:
        return None
    opened = _open(cookie_secret, sealed)
    if opened is None:
        return None
    try:
        body = json.loads(opened)
        age = utcnow().timestamp() - float(body["at"])
        message = body["m"]
    except (ValueError, KeyError, TypeError):
        return None
    if not 0 <= age <= FLASH_LIFETIME.total_seconds() or not isinstance(message, dict):
        return None
    return {str(k): str(v) for k, v in message.items()}


def _key(cookie_secret: str) -> bytes:
    return hmac.new(cookie_secret.encode("utf-8"), b"wfg-flash-key/1", hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range(-(-length // 32)):
        blocks.append(
            hmac.new(key, b"stream" + nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        )
    return b"".join(blocks)[:length]


def _seal(cookie_secret: str, plain: bytes) -> str:
    key = _key(cookie_secret)
    nonce = secrets.token_bytes(_NONCE)
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(key, nonce, len(plain)), strict=True))
    tag = hmac.new(key, b"tag" + nonce + cipher, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(nonce + cipher + tag).decode("ascii")


def _open(cookie_secret: str, sealed: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
    except ValueError:
        return None
    if len(raw) < _NONCE + _TAG:
        return None
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    key = _key(cookie_secret)
    expected = hmac.new(key, b"tag" + nonce + cipher, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        return None
    return bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher)), strict=True))

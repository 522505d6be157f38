"""What an app may ask for at `/connect`: a callback the portal may send a code to, an
S256 PKCE challenge, a name to show, and an opaque `state` passed back unchanged.

Callbacks (RFC 8252 §7.3, §8.3): plain `http` only to a loopback address on any port
(`127.0.0.1`, `[::1]`, `localhost`), where the app listens for the one redirect; any
other callback must be an `https` URL the operator listed in config.yaml
(`workforce_gateway.connect.https_callback_urls`), compared exactly. `plain` challenges
are refused: a code intercepted on the way to the callback must be useless without the
verifier that only the app holds (RFC 7636 §4.2, §7.2).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

__all__ = [
    "LOOPBACK_HOSTS",
    "ConnectRefused",
    "ConnectRequest",
    "callback_origin",
    "challenge_of",
    "check_callback",
    "form_action_source",
    "parse_connect_request",
    "valid_verifier",
    "with_params",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url(SHA-256), unpadded
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_CALLBACK = 2000
MAX_APP_NAME = 100
MAX_STATE = 500


class ConnectRefused(ValueError):
    """The app's request cannot be shown for approval; the text says why, for the person
    (never sent to the callback, which is not trusted until it passed)."""


@dataclass(frozen=True)
class ConnectRequest:
    app_name: str
    callback_url: str
    code_challenge: str
    state: str | None


def check_callback(url: str, https_allowed: Collection[str]) -> str:
    """`url` if the portal may redirect a code to it, else ConnectRefused."""
    if not url:
        raise ConnectRefused("The app did not say where to return (callback_url).")
    if len(url) > MAX_CALLBACK or _UNSAFE.search(url):
        raise ConnectRefused("The app's callback_url is not a valid address.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConnectRefused("The app's callback_url is not a valid address.") from None
    if parts.fragment or parts.username is not None or parts.password is not None:
        raise ConnectRefused("The app's callback_url may have no fragment and no user name.")
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return url
    if parts.scheme == "https" and url in https_allowed:
        return url
    raise ConnectRefused(
        "This app's callback_url is not allowed: apps return to http://127.0.0.1:<port>/, "
        "http://[::1]:<port>/ or http://localhost:<port>/ on your own computer, or to an "
        "https address this server's operator has listed."
    )


def callback_origin(url: str) -> str:
    """scheme://host[:port] of an accepted callback (for the page's form-action)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def form_action_source(url: str) -> str:
    """The CSP source letting the consent form's redirect reach an accepted callback. CSP
    host sources cannot name an IPv6 address (Chromium ignores `http://[::1]:port`, and
    the redirect is blocked), so a `[::1]` callback is allowed by its scheme, `http:`."""
    parts = urlsplit(url)
    if parts.hostname is not None and ":" in parts.hostname:
        return f"{parts.scheme}:"
    return callback_origin(url)


def parse_connect_request(
    params: Mapping[str, str], https_allowed: Collection[str]
) -> ConnectRequest:
    """The request the app sent (query string or the consent form), or ConnectRefused."""
    callback = check_callback(params.get("callback_url", ""), https_allowed)
    method = params.get("code_challenge_method", "")
    if method != "S256":
        raise ConnectRefused(
            "The app must send code_challenge_method=S256 (PKCE); "
            f"{'plain' if method == 'plain' else 'this method'} is not accepted."
        )
    challenge = params.get("code_challenge", "")
    if not _CHALLENGE.fullmatch(challenge):
        raise ConnectRefused(
            "The app's code_challenge is not an S256 challenge (43 base64url characters)."
        )
    app_name = " ".join(params.get("app", "").split())  # no control characters, one line
    if not 1 <= len(app_name) <= MAX_APP_NAME:
        raise ConnectRefused(f"The app must give its name (app), 1 to {MAX_APP_NAME} characters.")
    state = params.get("state") or None
    if state is not None and (len(state) > MAX_STATE or _CONTROL.search(state)):
        raise ConnectRefused("The app's state parameter is too long or not printable.")
    return ConnectRequest(app_name, callback, challenge, state)


def challenge_of(verifier: str) -> str:
    """The S256 challenge of a verifier: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.fullmatch(verifier))


def with_params(url: str, **params: str | None) -> str:
    """`url` with `params` (those not None) added to its query."""
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

"""Token material: 256 random bits, a recognisable prefix, and the stored SHA-256.

A fast hash is right here (unlike passwords): tokens are uniformly random, so there is
nothing to brute-force, and the gateway checks one on every request."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "display_prefix", "hash_token", "looks_like_token", "new_token"]

TOKEN_PREFIX = "wfg_"
_BODY_LENGTH = 43  # token_urlsafe(32): 32 bytes = 256 bits


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(TOKEN_PREFIX) + 6]


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and len(value) == len(TOKEN_PREFIX) + _BODY_LENGTH

"""Gateway token material: 256 random bits behind a recognisable prefix, stored as SHA-256."""

from __future__ import annotations

import base64
import hashlib

from portal.tokens.secrets import (
    TOKEN_PREFIX,
    display_prefix,
    hash_token,
    looks_like_token,
    new_token,
)


def test_tokens_are_256_random_bits_with_a_prefix() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("wfg_") and TOKEN_PREFIX == "wfg_"
        body = token.removeprefix(TOKEN_PREFIX)
        assert len(base64.urlsafe_b64decode(body + "=")) == 32  # 256 bits
        assert looks_like_token(token)
    # Every character position varies: nothing fixed hides in the body.
    bodies = [t.removeprefix(TOKEN_PREFIX) for t in tokens]
    assert all(len({b[i] for b in bodies}) > 10 for i in range(len(bodies[0]) - 1))


def test_hash_and_display_prefix() -> None:
    token = new_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(hash_token(token)) == 64
    prefix = display_prefix(token)
    assert token.startswith(prefix) and len(prefix) == len(TOKEN_PREFIX) + 6


def test_lookalikes_are_not_tokens() -> None:
    token = new_token()
    assert not looks_like_token(token[:-1])
    assert not looks_like_token(token + "A")
    assert not looks_like_token("sk-" + token.removeprefix(TOKEN_PREFIX))
    assert not looks_like_token("")

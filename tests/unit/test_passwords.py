"""Passwords are stored as argon2id hashes and checked against them."""

from __future__ import annotations

import pytest

from portal.accounts.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)

PASSWORD = "correct horse battery"


def test_hash_is_argon2id_salted_and_verifies(production_password_hashing: None) -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    # production's parameters (RFC 9106's second recommendation); other tests hash cheaply
    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in first
    assert first != second  # a fresh salt each time
    assert verify_password(first, PASSWORD)
    assert verify_password(second, PASSWORD)
    assert not verify_password(first, PASSWORD + "!")
    assert not verify_password(first, PASSWORD.upper())
    assert not needs_rehash(first)


def test_unusable_hashes_never_verify() -> None:
    assert not verify_password(None, PASSWORD)
    assert not verify_password("", PASSWORD)
    assert not verify_password("not-a-hash", PASSWORD)
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=4$broken", PASSWORD)


def test_length_limits() -> None:
    with pytest.raises(ValueError, match="characters long"):
        hash_password("x" * (MIN_PASSWORD_LENGTH - 1))
    with pytest.raises(ValueError, match="characters long"):
        hash_password("x" * (MAX_PASSWORD_LENGTH + 1))
    longest = "é" * MAX_PASSWORD_LENGTH
    hashed = hash_password(longest)
    assert verify_password(hashed, longest)
    # Over-long input is refused before hashing (no CPU burned on a 1 MB "password").
    assert not verify_password(hashed, longest + "x")
    assert verify_password(hash_password("x" * MIN_PASSWORD_LENGTH), "x" * MIN_PASSWORD_LENGTH)

"""Passwords: argon2id hashing (argon2-cffi's defaults follow RFC 9106) and the rules a
new password must meet.

Hashing costs tens of milliseconds of CPU and 64 MiB: the async functions run it in a
small pool of worker threads (argon2-cffi releases the GIL), so the event loop keeps
answering and at most `HASHING_THREADS` hashes run at once (the rest wait their turn),
which also bounds the memory a burst of sign-ins can take.

A new password must be 10+ characters and not easy to guess (NIST SP 800-63B: refuse
common and breached passwords): zxcvbn matches it against its frequency lists of leaked
passwords, words and names, common patterns, and the person's own email and name.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

__all__ = [
    "HASHING_THREADS",
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "check_new_password",
    "check_password",
    "hash_password",
    "hash_password_async",
    "needs_rehash",
    "verify_password",
    "verify_password_async",
]

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MIN_STRENGTH = 3  # zxcvbn score: about 10^8 guesses or more
_SCORED_LENGTH = 72  # zxcvbn's own bound; its run time grows fast with length
_hasher = PasswordHasher()
# Each hash already runs its lanes (`parallelism`, 4) on threads of its own: more hashes
# at once than cores / lanes only starve the event loop's thread, without more throughput.
HASHING_THREADS = max(1, min(4, (os.cpu_count() or 1) // _hasher.parallelism))
_workers = ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix="password-hash")


def check_password(password: str) -> None:
    """Raise ValueError (phrased for the user) if `password` cannot be used."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"passwords are {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )


def _weakness(password: str, personal: tuple[str, ...]) -> str | None:
    result = zxcvbn(password[:_SCORED_LENGTH], user_inputs=list(personal))
    if result["score"] >= MIN_STRENGTH:
        return None
    warning = result["feedback"]["warning"]
    reason = f" ({warning.rstrip('.')})" if warning else ""
    return (
        f"That password is too easy to guess{reason}. Try a few unrelated words, "
        "or let a password manager make one."
    )


async def check_new_password(password: str, *, personal: Iterable[str] = ()) -> None:
    """Raise ValueError (phrased for the user) if `password` is too short, too long, or
    common, leaked or built from `personal` facts (email, name)."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"Choose a password of {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."
        )
    words = tuple(_personal_words(personal))
    loop = asyncio.get_running_loop()
    if problem := await loop.run_in_executor(_workers, _weakness, password, words):
        raise ValueError(problem)


def _personal_words(texts: Iterable[str]) -> Iterable[str]:
    """`Ada Lovelace`, `ada.lovelace@x.org` → ada, lovelace, adalovelace, x, org, …"""
    for text in texts:
        parts = [part for part in re.split(r"[\W_]+", text.lower()) if part]
        yield from parts
        yield "".join(parts)
        if "@" in text:
            yield from _personal_words([text.split("@", 1)[0]])


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash or len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    """`hash_password` in a worker thread."""
    check_password(password)
    return await asyncio.get_running_loop().run_in_executor(_workers, _hasher.hash, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    """`verify_password` in a worker thread."""
    return await asyncio.get_running_loop().run_in_executor(
        _workers, verify_password, password_hash, password
    )


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)

"""Account records: create, look up, verify, suspend, change, delete. Callers own the
transaction.

Every change to what a gateway token check answers (verification, suspension, plan,
deletion) goes through a function here, and that function has the gateways' cached
checks of the user's tokens dropped once the caller's transaction commits
(`gateway_cache.drop_user_after_commit`); callers do nothing more. A password does not
enter a token check, so changing it leaves the cache alone."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.gateway_cache import drop_user_after_commit
from portal.accounts.models import AccountStatus, User
from portal.accounts.passwords import hash_password_async
from portal.db.base import utcnow
from portal.errors import NotFound

__all__ = [
    "EmailTaken",
    "change_email",
    "clean_name",
    "create_user",
    "delete_user",
    "get_by_email",
    "get_by_id",
    "mark_verified",
    "normalise_email",
    "require_by_email",
    "set_password",
    "set_password_hash",
    "set_plan",
    "suspend_user",
    "unsuspend_user",
]

# Line and paragraph separators end a line in mail text as surely as CR/LF do.
_NOT_IN_NAMES = frozenset({"Cc", "Zl", "Zp"})


class EmailTaken(ValueError):
    pass


def normalise_email(email: str) -> str:
    """The address as stored (lower-case), or ValueError if it is not one we can mail:
    email-validator's syntax rules (RFC 5321/5322 without quoted or obsolete forms, so
    nothing like `"<>` or a line break reaches a `To:` header). No DNS lookup."""
    email = email.strip()
    if len(email) > 320:
        raise ValueError("not a valid email address")
    try:
        checked = validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("not a valid email address") from None
    return checked.normalized.lower()


def clean_name(name: str) -> str:
    """The name as stored, or ValueError: 1 to 200 characters, no control characters
    (a line break in a name would start a new line in the mail that greets it)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("name must be 1 to 200 characters")
    if any(unicodedata.category(char) in _NOT_IN_NAMES for char in name):
        raise ValueError("name must not contain control characters or line breaks")
    return name


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    try:
        email = normalise_email(email)
    except ValueError:
        return None
    return await session.scalar(select(User).where(User.email == email))


async def require_by_email(session: AsyncSession, email: str) -> User:
    user = await get_by_email(session, email)
    if user is None:
        raise NotFound("no account with that email")
    return user


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    password: str | None = None,
    verified: bool = False,
) -> User:
    email = normalise_email(email)
    name = clean_name(name)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken("an account with that email already exists")
    user = User(
        email=email,
        name=name,
        password_hash=await hash_password_async(password) if password is not None else None,
        email_verified_at=utcnow() if verified else None,
        status=AccountStatus.ACTIVE,
    )
    session.add(user)
    await session.flush()
    return user


async def get_by_id(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def mark_verified(session: AsyncSession, user: User) -> None:
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        await session.flush()
        drop_user_after_commit(session, user.id)


async def suspend_user(session: AsyncSession, user_id: str) -> bool:
    """Refuse the account's tokens at every gateway (and its sign-ins) from the commit
    on; NotFound for no such account. True when it was active until now."""
    return await _set_status(session, user_id, AccountStatus.SUSPENDED)


async def unsuspend_user(session: AsyncSession, user_id: str) -> bool:
    """Make a suspended account active again; True when it was suspended until now."""
    return await _set_status(session, user_id, AccountStatus.ACTIVE)


async def _set_status(session: AsyncSession, user_id: str, status: AccountStatus) -> bool:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("no such account")
    changed = user.status != status
    if changed:
        user.status = status
        await session.flush()
    drop_user_after_commit(session, user.id)  # also on a repeat: a retry after Redis failed
    return changed


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    """Replace the password (ValueError if its length is out of bounds)."""
    await set_password_hash(session, user, await hash_password_async(password))


async def set_password_hash(session: AsyncSession, user: User, password_hash: str) -> None:
    """Replace the password with one hashed beforehand (outside the transaction's writes)."""
    user.password_hash = password_hash
    await session.flush()


async def change_email(session: AsyncSession, user: User, new_email: str) -> None:
    """Move the account to a new (already confirmed) address; EmailTaken if it is in use."""
    new_email = normalise_email(new_email)
    taken = await session.scalar(select(User.id).where(User.email == new_email, User.id != user.id))
    if taken is not None:
        raise EmailTaken("an account with that email already exists")
    user.email = new_email
    user.email_verified_at = utcnow()
    await session.flush()
    drop_user_after_commit(session, user.id)


async def set_plan(session: AsyncSession, user_id: str, plan: str) -> None:
    """The plan whose limits the gateway applies (billing sets it from the subscription);
    gateways re-read it after the commit rather than when their cached check expires."""
    await session.execute(update(User).where(User.id == user_id).values(plan=plan))
    drop_user_after_commit(session, user_id)


async def delete_user(session: AsyncSession, user: User) -> None:
    """Remove the account row. The schema does the rest: rows that belong only to the
    person (tokens, sessions, links, email log) cascade; usage and ledger rows are kept
    for accounting with their `user_id` set to NULL. The gateways' cached checks of the
    account's tokens are dropped after the commit."""
    user_id = user.id
    await session.delete(user)
    await session.flush()
    drop_user_after_commit(session, user_id)

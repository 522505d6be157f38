"""What a person does with their account, across accounts, sessions and email.

Each flow takes the caller's transaction and returns the mail to deliver after it
commits. Messages never tell whether an address has an account (sign-up, sign-in and
reset answer the same either way), and unknown addresses cost the same password work.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import links, throttle
from portal.accounts import service as accounts
from portal.accounts.models import AccountStatus, LinkPurpose, User
from portal.accounts.passwords import hash_password, verify_password
from portal.email import messages
from portal.email.messages import Mail
from portal.email.service import record
from portal.sessions import service as sessions

__all__ = [
    "FlowError",
    "SignInRefused",
    "change_password",
    "confirm_email_link",
    "request_email_change",
    "request_password_reset",
    "resend_verification",
    "reset_password",
    "sign_in",
    "sign_up",
]

# Verifying against this keeps an unknown address as slow as a wrong password.
_DUMMY_HASH = hash_password("not-a-real-password-0000")
_BAD_CREDENTIALS = "That email and password do not match an account."


class FlowError(ValueError):
    """A reason shown to the person as it is."""


class SignInRefused(FlowError):
    def __init__(self, message: str, *, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Urls:
    """Absolute portal URLs for links in mail."""

    base: str

    def at(self, path: str) -> str:
        return self.base.rstrip("/") + path


async def sign_up(
    session: AsyncSession, *, email: str, name: str, password: str, base_url: str
) -> list[Mail]:
    """Create an unverified account and mail its verification link. For an address that
    already has an account, mail its owner instead and answer exactly the same."""
    urls = Urls(base_url)
    try:
        email = accounts.normalise_email(email)
    except ValueError:
        raise FlowError("Enter a valid email address.") from None
    existing = await accounts.get_by_email(session, email)
    if existing is not None:
        _check_name(name)
        _check_password_shape(password)
        hash_password(password)  # same work as a real sign-up
        return [
            await record(
                session,
                messages.sign_up_existing(
                    user_id=existing.id,
                    to=existing.email,
                    name=existing.name,
                    signin_url=urls.at("/signin"),
                    reset_url=urls.at("/reset"),
                ),
            )
        ]
    _check_name(name)
    _check_password_shape(password)
    user = await accounts.create_user(session, email=email, name=name, password=password)
    return [await _verification_mail(session, user, urls)]


async def resend_verification(session: AsyncSession, user: User, *, base_url: str) -> list[Mail]:
    if user.is_verified:
        return []
    return [await _verification_mail(session, user, Urls(base_url))]


async def _verification_mail(session: AsyncSession, user: User, urls: Urls) -> Mail:
    secret = await links.issue_link(session, user, LinkPurpose.VERIFY_EMAIL)
    hours = int(links.LIFETIMES[LinkPurpose.VERIFY_EMAIL].total_seconds() // 3600)
    return await record(
        session,
        messages.verify_email(
            user_id=user.id,
            to=user.email,
            name=user.name,
            link=urls.at(f"/verify?token={secret}"),
            hours=hours,
        ),
    )


async def confirm_email_link(session: AsyncSession, secret: str) -> tuple[User, list[Mail]]:
    """Verify the address (or switch to the new one) named by a one-time link."""
    link = await links.consume_link(session, secret, LinkPurpose.VERIFY_EMAIL)
    user = await accounts.get_by_id(session, link.user_id) if link else None
    if link is None or user is None:
        raise FlowError("This link is invalid, expired or already used.")
    if link.new_email is None:
        await accounts.mark_verified(session, user)
        return user, []
    old_email = user.email
    try:
        await accounts.change_email(session, user, link.new_email)
    except accounts.EmailTaken:
        raise FlowError("That address now belongs to another account.") from None
    notice = messages.email_changed(user_id=user.id, to=old_email, name=user.name)
    return user, [await record(session, notice)]


async def sign_in(session: AsyncSession, *, email: str, password: str, address: str) -> User:
    """The account for these credentials, or SignInRefused (same words for every reason
    except the throttle, which applies to unknown addresses alike)."""
    wait = await throttle.retry_after_seconds(session, email=email, address=address)
    if wait:
        minutes = max(1, round(wait / 60))
        raise SignInRefused(
            f"Too many failed sign-ins. Try again in about {minutes} minute"
            f"{'s' if minutes != 1 else ''}, or reset your password.",
            retry_after=wait,
        )
    user = await accounts.get_by_email(session, email)
    if user is None:
        verify_password(_DUMMY_HASH, password)
        ok = False
    else:
        ok = verify_password(user.password_hash, password)
    if not ok or user is None:
        await throttle.record_failure(session, email=email, address=address)
        raise SignInRefused(_BAD_CREDENTIALS)
    if user.status != AccountStatus.ACTIVE:
        raise SignInRefused("This account is suspended. Contact support.")
    await throttle.clear_account(session, email)
    return user


async def request_password_reset(session: AsyncSession, *, email: str, base_url: str) -> list[Mail]:
    """Mail a reset link if the address has an account; answer the same either way."""
    user = await accounts.get_by_email(session, email)
    if user is None or user.status != AccountStatus.ACTIVE:
        return []
    secret = await links.issue_link(session, user, LinkPurpose.RESET_PASSWORD)
    minutes = int(links.LIFETIMES[LinkPurpose.RESET_PASSWORD].total_seconds() // 60)
    mail = messages.password_reset(
        user_id=user.id,
        to=user.email,
        name=user.name,
        link=Urls(base_url).at(f"/reset/confirm?token={secret}"),
        minutes=minutes,
    )
    return [await record(session, mail)]


async def reset_password(
    session: AsyncSession, *, secret: str, password: str, base_url: str
) -> tuple[User, list[Mail]]:
    """Set a new password through a reset link; every session of the account ends."""
    _check_password_shape(password)
    link = await links.find_link(session, secret, LinkPurpose.RESET_PASSWORD)
    user = await accounts.get_by_id(session, link.user_id) if link else None
    if link is None or user is None:
        raise FlowError("This link is invalid, expired or already used. Ask for a new one.")
    await links.consume_link(session, secret, LinkPurpose.RESET_PASSWORD)
    await accounts.set_password(session, user, password)
    await accounts.mark_verified(session, user)  # the link proved the mailbox
    await sessions.end_all_sessions(session, user.id)
    await throttle.clear_account(session, user.email)
    return user, [await _password_changed_mail(session, user, base_url)]


async def change_password(
    session: AsyncSession, user: User, *, current: str, new: str, base_url: str
) -> list[Mail]:
    """Change the password after checking the current one; every session ends (the
    caller starts a fresh one for the browser that asked)."""
    if not verify_password(user.password_hash, current):
        raise FlowError("Your current password is not correct.")
    _check_password_shape(new)
    await accounts.set_password(session, user, new)
    await sessions.end_all_sessions(session, user.id)
    return [await _password_changed_mail(session, user, base_url)]


async def _password_changed_mail(session: AsyncSession, user: User, base_url: str) -> Mail:
    mail = messages.password_changed(
        user_id=user.id, to=user.email, name=user.name, reset_url=Urls(base_url).at("/reset")
    )
    return await record(session, mail)


async def request_email_change(
    session: AsyncSession, user: User, *, password: str, new_email: str, base_url: str
) -> list[Mail]:
    """Mail a confirmation link to the new address; the account switches when it is used.
    Says nothing about whether the new address already has an account."""
    if not verify_password(user.password_hash, password):
        raise FlowError("Your password is not correct.")
    try:
        new_email = accounts.normalise_email(new_email)
    except ValueError:
        raise FlowError("Enter a valid email address.") from None
    if new_email == user.email:
        raise FlowError("That is already your address.")
    if await accounts.get_by_email(session, new_email) is not None:
        return []  # answer as if sent; the link could never be used anyway
    secret = await links.issue_link(session, user, LinkPurpose.VERIFY_EMAIL, new_email=new_email)
    hours = int(links.LIFETIMES[LinkPurpose.VERIFY_EMAIL].total_seconds() // 3600)
    mail = messages.email_change(
        user_id=user.id,
        to=new_email,
        name=user.name,
        link=Urls(base_url).at(f"/verify?token={secret}"),
        hours=hours,
    )
    return [await record(session, mail)]


def _check_name(name: str) -> None:
    if not 1 <= len(name.strip()) <= 200:
        raise FlowError("Enter your name (up to 200 characters).")


def _check_password_shape(password: str) -> None:
    from portal.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise FlowError(
            f"Choose a password of {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters."
        )

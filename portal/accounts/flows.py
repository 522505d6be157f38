"""What a person does with their account, across accounts, sessions and email.

Each flow takes the caller's transaction and returns the mail to deliver after it
commits. Messages never tell whether an address has an account (sign-up, sign-in and
reset answer the same either way), and unknown addresses cost the same password work.

Abuse limits (`throttle`): `admit_*` count an attempt and must be committed before the
password is checked, so parallel guesses are counted like sequential ones; mail that
anyone can trigger is limited per recipient (silently: the page answers the same) and,
in the routes, per client.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import links, throttle
from portal.accounts import service as accounts
from portal.accounts.models import AccountStatus, LinkPurpose, User
from portal.accounts.passwords import (
    check_new_password,
    hash_password,
    hash_password_async,
    verify_password_async,
)
from portal.email import messages
from portal.email.messages import Mail
from portal.email.service import record
from portal.sessions import service as sessions

__all__ = [
    "FlowError",
    "SignInRefused",
    "Throttled",
    "admit_mail_request",
    "admit_password_reentry",
    "admit_sign_in",
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


class Throttled(FlowError):
    """Too many attempts: try again in `retry_after` seconds (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _in_about(seconds: int) -> str:
    if seconds < 90:
        return f"about {seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"


async def admit_mail_request(session: AsyncSession, *, client: str) -> None:
    """Count an anonymous request that may send mail (sign-up, reset) from `client`;
    Throttled past the limit, whatever the address asked about."""
    if wait := await throttle.take(session, throttle.MAIL_CLIENT, client):
        raise Throttled(
            f"Too many requests from your network. Try again in {_in_about(wait)}.",
            retry_after=wait,
        )


async def _may_mail(session: AsyncSession, address: str) -> bool:
    """Whether one more message anyone could trigger may go to `address` now."""
    return not await throttle.take(session, throttle.MAIL_RECIPIENT, address, email=address)


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
    name = _check_name(name)
    await _check_new_password(password, email, name)
    existing = await accounts.get_by_email(session, email)
    may_mail = await _may_mail(session, email)
    if existing is not None:
        await hash_password_async(password)  # same work as a real sign-up
        if not may_mail:
            return []
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
    user = await accounts.create_user(session, email=email, name=name, password=password)
    return [await _verification_mail(session, user, urls)]  # one per new account, always


async def resend_verification(session: AsyncSession, user: User, *, base_url: str) -> list[Mail]:
    if user.is_verified or not await _may_mail(session, user.email):
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


async def admit_sign_in(session: AsyncSession, *, email: str, client: str) -> None:
    """Count a sign-in attempt for (`email`, `client`) and for `client`; SignInRefused
    with `retry_after` while either must wait. Commit before `sign_in` checks the password."""
    address = email.strip().lower()
    wait = await throttle.take(session, throttle.SIGN_IN_PAIR, address, client, email=address)
    wait = wait or await throttle.take(session, throttle.SIGN_IN_CLIENT, client)
    if wait:
        raise SignInRefused(
            f"Too many failed sign-ins. Try again in {_in_about(wait)}, or reset your password.",
            retry_after=wait,
        )


async def sign_in(session: AsyncSession, *, email: str, password: str, client: str) -> User:
    """The account for these credentials, or SignInRefused (same words for every reason
    but suspension). The attempt was counted by `admit_sign_in`; success uncounts it."""
    user = await accounts.get_by_email(session, email)
    ok = await verify_password_async(user.password_hash if user else _DUMMY_HASH, password)
    if not ok or user is None:
        raise SignInRefused(_BAD_CREDENTIALS)
    if user.status != AccountStatus.ACTIVE:
        raise SignInRefused("This account is suspended. Contact support.")
    address = email.strip().lower()
    await throttle.forget(session, throttle.SIGN_IN_PAIR, address, client)
    await throttle.give_back(session, throttle.SIGN_IN_CLIENT, client)
    return user


async def admit_password_reentry(session: AsyncSession, user: User) -> None:
    """Count one re-entry of the password on a signed-in page (change password or email,
    delete); Throttled while too many were wrong. Commit before checking the password."""
    wait = await throttle.take(session, throttle.PASSWORD_REENTRY, user.id, email=user.email)
    if wait:
        raise Throttled(
            f"Too many wrong passwords. Try again in {_in_about(wait)}.", retry_after=wait
        )


async def _reentered_password_matches(session: AsyncSession, user: User, password: str) -> bool:
    if not await verify_password_async(user.password_hash, password):
        return False
    await throttle.forget(session, throttle.PASSWORD_REENTRY, user.id)
    return True


async def request_password_reset(session: AsyncSession, *, email: str, base_url: str) -> list[Mail]:
    """Mail a reset link if the address has an account (and has not had too many);
    the caller answers the same either way, before this runs (`admit_mail_request`)."""
    try:
        email = accounts.normalise_email(email)
    except ValueError:
        return []
    if not await _may_mail(session, email):
        return []
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
    """Set a new password through a reset link; every session of the account ends.
    The link is used up by one conditional UPDATE: of parallel uses, one wins."""
    unusable = FlowError("This link is invalid, expired or already used. Ask for a new one.")
    link = await links.find_link(session, secret, LinkPurpose.RESET_PASSWORD)
    user = await accounts.get_by_id(session, link.user_id) if link else None
    if link is None or user is None:
        raise unusable
    await _check_new_password(password, user.email, user.name)
    new_hash = await hash_password_async(password)  # before this transaction writes
    if await links.consume_link(session, secret, LinkPurpose.RESET_PASSWORD) is None:
        raise unusable
    await accounts.set_password_hash(session, user, new_hash)
    await accounts.mark_verified(session, user)  # the link proved the mailbox
    await sessions.end_all_sessions(session, user.id)
    await throttle.clear_account(session, user.email)
    return user, [await _password_changed_mail(session, user, base_url)]


async def change_password(
    session: AsyncSession, user: User, *, current: str, new: str, base_url: str
) -> list[Mail]:
    """Change the password after checking the current one; every session ends (the
    caller starts a fresh one for the browser that asked)."""
    if not await _reentered_password_matches(session, user, current):
        raise FlowError("Your current password is not correct.")
    await _check_new_password(new, user.email, user.name)
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
    if not await _reentered_password_matches(session, user, password):
        raise FlowError("Your password is not correct.")
    try:
        new_email = accounts.normalise_email(new_email)
    except ValueError:
        raise FlowError("Enter a valid email address.") from None
    if new_email == user.email:
        raise FlowError("That is already your address.")
    if not await _may_mail(session, new_email):
        return []  # answer as if sent: no flooding an address through this form
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


def _check_name(name: str) -> str:
    try:
        return accounts.clean_name(name)
    except ValueError:
        raise FlowError("Enter your name: up to 200 characters, on one line.") from None


async def _check_new_password(password: str, email: str, name: str) -> None:
    try:
        await check_new_password(password, personal=(email, name))
    except ValueError as problem:
        raise FlowError(str(problem)) from None

"""The text of every message we send. Plain text, no tracking, and no secret beyond the
one-time link a message exists to deliver (never a token, password or balance detail
that is not the point of the message)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.email.models import EmailKind

__all__ = [
    "Mail",
    "account_deleted",
    "auto_top_up_failed",
    "email_change",
    "email_changed",
    "low_balance",
    "password_changed",
    "password_reset",
    "sign_up_existing",
    "token_created",
    "verify_email",
]

_SIGNATURE = "\n\n— WorkForce Gateway\n"


@dataclass(frozen=True)
class Mail:
    kind: str
    to: str
    subject: str
    text: str
    user_id: str | None  # None once the account is gone (not logged)


def verify_email(*, user_id: str, to: str, name: str, link: str, hours: int) -> Mail:
    return Mail(
        EmailKind.VERIFY_EMAIL,
        to,
        "Confirm your email address",
        f"Hello {name},\n\nConfirm this address for your WorkForce Gateway account by "
        f"opening this link within {hours} hours:\n\n{link}\n\nUntil you do, the gateway "
        "refuses your tokens. If you did not sign up, ignore this message." + _SIGNATURE,
        user_id,
    )


def sign_up_existing(*, user_id: str, to: str, name: str, signin_url: str, reset_url: str) -> Mail:
    return Mail(
        EmailKind.SIGN_UP_EXISTING,
        to,
        "Someone tried to sign up with your address",
        f"Hello {name},\n\nSomeone (perhaps you) tried to create a new account with this "
        f"address, which already has one. Sign in at {signin_url}\nor, if you forgot your "
        f"password, reset it at {reset_url}\n\nIf it was not you, nothing changed; you "
        "can ignore this message." + _SIGNATURE,
        user_id,
    )


def password_reset(*, user_id: str, to: str, name: str, link: str, minutes: int) -> Mail:
    return Mail(
        EmailKind.PASSWORD_RESET,
        to,
        "Reset your password",
        f"Hello {name},\n\nTo choose a new password, open this link within {minutes} "
        f"minutes:\n\n{link}\n\nIf you did not ask for this, ignore this message: your "
        "password stays as it is." + _SIGNATURE,
        user_id,
    )


def password_changed(*, user_id: str, to: str, name: str, reset_url: str) -> Mail:
    return Mail(
        EmailKind.PASSWORD_CHANGED,
        to,
        "Your password was changed",
        f"Hello {name},\n\nThe password of your WorkForce Gateway account was just "
        "changed, and every browser signed in to it was signed out. If this was not you, "
        f"reset your password now at {reset_url}" + _SIGNATURE,
        user_id,
    )


def email_change(*, user_id: str, to: str, name: str, link: str, hours: int) -> Mail:
    return Mail(
        EmailKind.EMAIL_CHANGE,
        to,
        "Confirm your new email address",
        f"Hello {name},\n\nTo make this the address of your WorkForce Gateway account, "
        f"open this link within {hours} hours:\n\n{link}\n\nIf you did not ask for this, "
        "ignore this message." + _SIGNATURE,
        user_id,
    )


def email_changed(*, user_id: str, to: str, name: str) -> Mail:
    return Mail(
        EmailKind.EMAIL_CHANGED,
        to,
        "Your email address was changed",
        f"Hello {name},\n\nYour WorkForce Gateway account now uses a different email "
        "address, and messages will go there from now on. If this was not you, contact "
        "support at once." + _SIGNATURE,
        user_id,
    )


def token_created(*, user_id: str, to: str, name: str, token_name: str, tokens_url: str) -> Mail:
    return Mail(
        EmailKind.TOKEN_CREATED,
        to,
        "A new gateway token was created",
        f"Hello {name},\n\nA gateway token named “{token_name}” was created on your "
        f"account. If this was not you, revoke it at {tokens_url} and change your "
        "password." + _SIGNATURE,
        user_id,
    )


def account_deleted(*, to: str, name: str) -> Mail:
    return Mail(
        EmailKind.ACCOUNT_DELETED,
        to,
        "Your account was deleted",
        f"Hello {name},\n\nYour WorkForce Gateway account was deleted as you asked: its "
        "tokens no longer work, you were signed out everywhere, and your usage and ledger "
        "records no longer point to you. We will send nothing more to this address." + _SIGNATURE,
        None,
    )


def low_balance(*, user_id: str, to: str, name: str, balance: str, dashboard_url: str) -> Mail:
    return Mail(
        EmailKind.LOW_BALANCE,
        to,
        "Your credit balance is low",
        f"Hello {name},\n\nYour balance is down to {balance} credits. When it runs out, "
        f"the gateway refuses new requests. Top up or check your usage at {dashboard_url}"
        + _SIGNATURE,
        user_id,
    )


_TOP_UP_REASONS = {
    "card_declined": "your card was declined",
    "authentication_required": "your bank asked you to confirm the payment, which it cannot "
    "do while you are away",
    "no_saved_card": "no card is saved for it",
    "expired_card": "your card has expired",
    "insufficient_funds": "the card has insufficient funds",
}


def auto_top_up_failed(*, user_id: str, to: str, name: str, reason: str, fix_url: str) -> Mail:
    why = _TOP_UP_REASONS.get(reason, "the payment did not go through")
    return Mail(
        EmailKind.AUTO_TOP_UP_FAILED,
        to,
        "Auto top-up failed and is now off",
        f"Hello {name},\n\nWe tried to top up your credits automatically, but {why}. "
        "Nothing was charged, and auto top-up is now off so we do not try again. To fix it, "
        "update your card in the billing portal and turn auto top-up back on at\n\n"
        f"{fix_url}" + _SIGNATURE,
        user_id,
    )

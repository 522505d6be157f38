"""Sign-up, verification, sign-in, reset, password and email changes, as a person sees them."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select, update

from portal.accounts import throttle
from portal.accounts.models import AccountLink, User
from portal.db import Database
from portal.db.base import utcnow
from portal.sessions.models import WebSession
from tests.portal.conftest import NewBrowser, SignedInUser
from tests.portal.support import PASSWORD, Browser, Outbox


async def test_sign_up_verify_and_sign_in(browser: Browser, outbox: Outbox, db: Database) -> None:
    response = await browser.sign_up("Ada@Example.com", name="Ada Lovelace")
    assert response.status_code == 200
    assert "Check your email" in response.text

    mail = outbox.last("ada@example.com", "verify_email")
    assert "Confirm" in mail.subject
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.email == "ada@example.com"))
        stored = await session.scalar(select(AccountLink.token_hash))
    assert user is not None and not user.is_verified
    assert user.password_hash.startswith("$argon2id$")
    assert stored not in mail.text  # only the hash is kept

    response = await browser.sign_in("ada@example.com")
    assert response.status_code == 303
    page = await browser.get("/dashboard")
    assert "unverified-banner" in page.text

    verified = await browser.get(mail.link())
    assert verified.status_code == 200 and "Email confirmed" in verified.text
    assert "unverified-banner" not in (await browser.get("/dashboard")).text
    # single use
    again = await browser.get(mail.link())
    assert again.status_code == 400 and "invalid, expired or already used" in again.text


async def test_resend_verification_replaces_the_old_link(
    signed_in: SignedInUser, outbox: Outbox
) -> None:
    browser, _user_id, email = await signed_in(verified=False)
    assert (await browser.post("/verify/resend")).status_code == 303
    first = outbox.last(email, "verify_email")
    assert (await browser.post("/verify/resend")).status_code == 303
    second = outbox.last(email, "verify_email")
    assert first.link() != second.link()
    assert (await browser.get(first.link())).status_code == 400
    assert (await browser.get(second.link())).status_code == 200


async def test_expired_verification_link_is_refused(
    browser: Browser, outbox: Outbox, db: Database
) -> None:
    await browser.sign_up("late@example.com")
    async with db.transaction() as session:
        await session.execute(update(AccountLink).values(expires_at=utcnow()))
    response = await browser.get(outbox.last("late@example.com").link())
    assert response.status_code == 400


async def test_sign_up_does_not_reveal_existing_accounts(
    new_browser: NewBrowser, outbox: Outbox, db: Database
) -> None:
    first, second = new_browser(), new_browser()
    fresh = await first.sign_up("taken@example.com", name="First")
    again = await second.sign_up("taken@example.com", name="Intruder")
    assert fresh.status_code == again.status_code == 200
    assert _main(fresh.text) == _main(again.text)
    # the owner hears about it; no second account exists
    assert outbox.last("taken@example.com").kind == "sign_up_existing"
    async with db.session() as session:
        names = list(await session.scalars(select(User.name)))
    assert names == ["First"]


async def test_sign_in_messages_are_the_same_for_unknown_and_wrong_password(
    new_browser: NewBrowser, signed_in: SignedInUser
) -> None:
    _browser, _user_id, email = await signed_in()
    wrong = await new_browser().sign_in(email, "not the password at all")
    unknown = await new_browser().sign_in("nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 400
    assert "do not match an account" in wrong.text
    assert _main(wrong.text).replace(email, "X") == _main(unknown.text).replace(
        "nobody@example.com", "X"
    )


async def test_reset_request_answers_the_same_for_unknown_addresses(
    browser: Browser, signed_in: SignedInUser, outbox: Outbox
) -> None:
    _b, _user_id, email = await signed_in()
    known = await browser.post("/reset", {"email": email})
    unknown = await browser.post("/reset", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert _main(known.text) == _main(unknown.text)
    assert outbox.to("nobody@example.com") == []
    assert outbox.last(email).kind == "password_reset"


async def test_failed_sign_ins_are_throttled_per_account_and_client(
    new_browser: NewBrowser, signed_in: SignedInUser
) -> None:
    _b, _user_id, email = await signed_in()
    attacker = new_browser("198.51.100.66")
    for _ in range(throttle.SIGN_IN_PAIR.free):
        assert (await attacker.sign_in(email, "wrong password guess")).status_code == 400
    blocked = await attacker.sign_in(email)  # even the right password now waits, here
    assert blocked.status_code == 429
    assert "Too many failed sign-ins" in blocked.text
    assert int(blocked.headers["retry-after"]) > 0
    # an address without an account behaves the same (no enumeration through the throttle)
    for _ in range(throttle.SIGN_IN_PAIR.free):
        await attacker.sign_in("ghost@example.com", "wrong password guess")
    assert (await attacker.sign_in("ghost@example.com", "x" * 12)).status_code == 429
    # the owner, elsewhere, is not locked out by the attacker's guesses
    assert (await new_browser().sign_in(email)).status_code == 303


async def test_failed_sign_ins_are_throttled_per_client(
    new_browser: NewBrowser, signed_in: SignedInUser, db: Database
) -> None:
    _b, _user_id, email = await signed_in()
    sprayer = "198.51.100.66"
    async with db.transaction() as session:  # a password spray across many accounts
        for _ in range(throttle.SIGN_IN_CLIENT.free - 1):
            await throttle.take(session, throttle.SIGN_IN_CLIENT, sprayer)
    await new_browser(sprayer).sign_in("spray-last@example.com", "wrong password guess")
    refused = await new_browser(sprayer).sign_in(email)
    assert refused.status_code == 429
    assert (await new_browser().sign_in(email)).status_code == 303  # other clients are not


async def test_password_reset_sets_the_password_and_ends_sessions(
    signed_in: SignedInUser, new_browser: NewBrowser, outbox: Outbox, db: Database
) -> None:
    logged_in, _user_id, email = await signed_in()
    anonymous = new_browser()
    await anonymous.post("/reset", {"email": email})
    link = outbox.last(email, "password_reset").link()
    form = await anonymous.get(link)
    assert form.status_code == 200
    token = link.split("token=")[1]
    short = await anonymous.post("/reset/confirm", {"token": token, "password": "short"})
    assert short.status_code == 400 and "10 to 1024" in short.text
    done = await anonymous.post("/reset/confirm", {"token": token, "password": "a brand new pass"})
    assert done.status_code == 303
    assert not await logged_in.signed_in()  # the old session ended
    assert outbox.last(email).kind == "password_changed"
    assert (await new_browser().sign_in(email, PASSWORD)).status_code == 400
    assert (await new_browser().sign_in(email, "a brand new pass")).status_code == 303
    reuse = await anonymous.post("/reset/confirm", {"token": token, "password": "yet another one"})
    assert reuse.status_code == 400


async def test_change_password_signs_out_other_browsers_and_keeps_this_one(
    signed_in: SignedInUser, new_browser: NewBrowser, outbox: Outbox, db: Database
) -> None:
    here, _user_id, email = await signed_in()
    elsewhere = new_browser()
    await elsewhere.sign_in(email)
    before = here.cookie()
    wrong = await here.post(
        "/account/password", {"current_password": "nope nope nope", "new_password": "x" * 12}
    )
    assert wrong.status_code == 400 and "current password is not correct" in wrong.text
    changed = await here.post(
        "/account/password", {"current_password": PASSWORD, "new_password": "another secret!"}
    )
    assert changed.status_code == 303
    assert here.cookie() != before  # rotated
    assert await here.signed_in()
    assert not await elsewhere.signed_in()
    assert outbox.last(email).kind == "password_changed"
    async with db.session() as session:
        assert len(list(await session.scalars(select(WebSession)))) == 1


async def test_change_email_is_confirmed_from_the_new_address(
    signed_in: SignedInUser, outbox: Outbox, db: Database
) -> None:
    browser, user_id, email = await signed_in()
    asked = await browser.post(
        "/account/email", {"new_email": "New@Example.org", "password": PASSWORD}
    )
    assert asked.status_code == 303
    async with db.session() as session:
        assert (await session.get(User, user_id)).email == email  # not yet
    confirm = await browser.get(outbox.last("new@example.org", "email_change").link())
    assert confirm.status_code == 200
    async with db.session() as session:
        user = await session.get(User, user_id)
    assert user.email == "new@example.org" and user.is_verified
    assert outbox.last(email).kind == "email_changed"  # the old address is told


async def test_change_email_to_a_taken_address_reveals_nothing(
    signed_in: SignedInUser, outbox: Outbox
) -> None:
    browser, _id, _email = await signed_in()
    _other, _id2, other_email = await signed_in()
    response = await browser.post(
        "/account/email", {"new_email": other_email, "password": PASSWORD}
    )
    assert response.status_code == 303
    assert outbox.to(other_email, "email_change") == []


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil"])
async def test_sign_in_never_redirects_off_site(
    signed_in: SignedInUser, new_browser: NewBrowser, target: str
) -> None:
    _b, _id, email = await signed_in()
    browser = new_browser()
    response = await browser.post("/signin", {"email": email, "password": PASSWORD, "next": target})
    assert response.headers["location"] == "/dashboard"


def _main(html: str) -> str:
    """The page's main content, without the per-browser CSRF token."""
    start, end = html.index("<main>"), html.index("</main>")
    return re.sub(r'name="csrf_token" value="[^"]+"', "", html[start:end])

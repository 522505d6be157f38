"""Abuse of sign-in and account pages at volume (issue 9, points 1-4, 6, 8, 9), through
real HTTP requests to the app on a real database.

The parts that need the real server process (trusted proxies, the access log, timing of
/reset as a client sees it) are in test_portal_process.py."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from portal.accounts import throttle
from portal.accounts.models import ThrottleCounter, User
from portal.accounts.passwords import hash_password
from portal.db import Database
from portal.db.base import utcnow
from tests.portal.conftest import NewBrowser, SignedInUser
from tests.portal.support import PASSWORD, Browser, Outbox

WRONG = "wrong password guess"


async def _prepared_posts(browser: Browser, path: str, forms: list[dict[str, str]]):
    """Send the forms at once, as a script would (CSRF token read first)."""
    token = await browser.csrf("/reset")
    return await asyncio.gather(
        *(browser.client.post(path, data={"csrf_token": token, **form}) for form in forms)
    )


# 1. Throttle race ----------------------------------------------------------------------


async def test_parallel_sign_in_guesses_are_counted_like_sequential_ones(
    signed_in: SignedInUser, new_browser: NewBrowser
) -> None:
    # With the suite's cheap hashes the requests really overlap (a slow hash would space
    # them out). The right password follows the burst instead of riding in it: a sign-in
    # that succeeds starts the count over, so inside the burst its place (which the server
    # chooses, not the order sent) would decide how many guesses come after it.
    _b, _id, email = await signed_in()
    attacker = new_browser("198.51.100.9")
    forms = [{"email": email, "password": f"{WRONG} {n}"} for n in range(11)]
    answers = await _prepared_posts(attacker, "/signin", forms)
    statuses = [a.status_code for a in answers]
    assert statuses.count(400) == throttle.SIGN_IN_PAIR.free, statuses
    assert statuses.count(429) == len(forms) - throttle.SIGN_IN_PAIR.free, statuses
    assert (await attacker.sign_in(email)).status_code == 429  # the right one waits too


# 2. Lock-out as a weapon: growing delays per (account, client) ---------------------------


async def test_the_wait_grows_with_each_further_failure(
    signed_in: SignedInUser, new_browser: NewBrowser, db: Database
) -> None:
    _b, _id, email = await signed_in()
    attacker = new_browser("198.51.100.9")
    for _ in range(throttle.SIGN_IN_PAIR.free):
        assert (await attacker.sign_in(email, WRONG)).status_code == 400
    first = await attacker.sign_in(email, WRONG)
    assert first.status_code == 429
    first_wait = int(first.headers["retry-after"])
    assert 0 < first_wait <= 30

    async def wait_is_over() -> None:
        async with db.transaction() as session:
            await session.execute(
                update(ThrottleCounter).values(blocked_until=utcnow() - timedelta(seconds=1))
            )

    await wait_is_over()
    assert (await attacker.sign_in(email, WRONG)).status_code == 400  # one more try
    second = await attacker.sign_in(email, WRONG)
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) > first_wait * 1.5  # about twice as long
    await wait_is_over()
    assert (await attacker.sign_in(email)).status_code == 303  # the right password, in time
    # …and a success from that client starts its count over
    assert (await attacker.sign_in(email, WRONG)).status_code == 400


# 3. Mail flooding ----------------------------------------------------------------------


async def test_anonymous_forms_send_one_address_only_a_few_messages(
    signed_in: SignedInUser, new_browser: NewBrowser, outbox: Outbox
) -> None:
    _b, _id, email = await signed_in()
    answers = []
    for n in range(8):  # from many clients, so only the per-recipient limit applies
        browser = new_browser(f"198.51.100.{n + 1}")
        answers.append(await browser.post("/reset", {"email": email}))
        answers.append(await browser.sign_up(email, name="Mallory", password=PASSWORD))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text.split("<main", 1)[1] for a in answers[::2]}) == 1  # resets look alike
    assert len(outbox.to(email)) == throttle.MAIL_RECIPIENT.free


async def test_one_client_can_ask_for_only_so_much_mail(
    signed_in: SignedInUser, new_browser: NewBrowser, outbox: Outbox
) -> None:
    _b, _id, email = await signed_in()
    flooder = new_browser("198.51.100.77")
    for n in range(throttle.MAIL_CLIENT.free):
        assert (await flooder.post("/reset", {"email": f"n{n}@example.com"})).status_code == 200
    known = await flooder.post("/reset", {"email": email})
    unknown = await flooder.post("/reset", {"email": "nobody@example.com"})
    signup = await flooder.sign_up(f"new-{uuid.uuid4().hex[:8]}@example.com")
    assert known.status_code == unknown.status_code == signup.status_code == 429
    assert known.text.replace(email, "X") == unknown.text.replace("nobody@example.com", "X")
    assert int(known.headers["retry-after"]) > 0
    assert outbox.to(email) == []
    # someone else is not affected
    assert (await new_browser().post("/reset", {"email": email})).status_code == 200
    assert outbox.last(email).kind == "password_reset"


async def test_changing_the_email_cannot_flood_another_address(
    signed_in: SignedInUser, outbox: Outbox
) -> None:
    browser, _id, _email = await signed_in()
    target = "victim@example.org"
    for _ in range(6):
        answer = await browser.post(
            "/account/email", {"new_email": target, "password": PASSWORD}, page="/account"
        )
        assert answer.status_code == 303
    assert len(outbox.to(target)) == throttle.MAIL_RECIPIENT.free


# 4. Password hashing off the event loop -------------------------------------------------


async def test_password_hashing_does_not_stall_other_requests(
    browser: Browser, production_password_hashing: None
) -> None:
    started = time.perf_counter()
    hash_password(PASSWORD)
    one_hash = time.perf_counter() - started

    token = await browser.csrf("/signin")
    lags: list[float] = []
    burst = asyncio.gather(
        *(
            browser.client.post(
                "/signin",
                data={"csrf_token": token, "email": f"p{n}@example.com", "password": WRONG},
            )
            for n in range(16)
        )
    )
    while not burst.done():  # how late does the event loop wake a sleeper?
        before = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - before - 0.005)
    assert {a.status_code for a in await burst} == {400}
    typical = statistics.median(lags)
    print(f"one hash {one_hash:.3f} s; loop lag median {typical:.3f} s, worst {max(lags):.3f} s")
    # On the loop, every hash would hold everything else for its whole duration, so the
    # typical lag would be a whole hash; a busy machine delays single wake-ups, not most.
    assert typical < 0.5 * one_hash, (typical, one_hash)


# 6. One-time links are used once -------------------------------------------------------


async def test_a_reset_link_used_in_parallel_works_once(
    signed_in: SignedInUser, new_browser: NewBrowser, outbox: Outbox
) -> None:
    _b, _id, email = await signed_in()
    anonymous = new_browser()
    await anonymous.post("/reset", {"email": email})
    token = outbox.last(email, "password_reset").link().split("token=")[1]
    forms = [{"token": token, "password": f"fresh passphrase number {n}"} for n in range(6)]
    answers = await _prepared_posts(anonymous, "/reset/confirm", forms)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [303] + [400] * 5, statuses
    assert len(outbox.to(email, "password_changed")) == 1


async def test_a_verification_link_used_in_parallel_works_once(
    browser: Browser, outbox: Outbox
) -> None:
    await browser.sign_up("twice@example.com")
    link = outbox.last("twice@example.com", "verify_email").link()
    answers = await asyncio.gather(*(browser.get(link) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 5


# 8. Password checks --------------------------------------------------------------------


@pytest.mark.parametrize("weak", ["aaaaaaaaaa", "password12", "1234567890", "qwertyuiop12"])
async def test_common_passwords_are_refused_at_sign_up(
    browser: Browser, db: Database, weak: str
) -> None:
    answer = await browser.sign_up("weak@example.com", password=weak)
    assert answer.status_code == 400
    assert "too easy to guess" in answer.text
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_passwords_built_from_the_persons_name_are_refused(browser: Browser) -> None:
    answer = await browser.sign_up(
        "ada.lovelace@example.com", name="Ada Lovelace", password="adalovelace1"
    )
    assert answer.status_code == 400 and "too easy to guess" in answer.text


async def test_common_passwords_are_refused_on_change_and_reset(
    signed_in: SignedInUser, new_browser: NewBrowser, outbox: Outbox
) -> None:
    browser, _id, email = await signed_in()
    change = await browser.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "password12"},
        page="/account",
    )
    assert change.status_code == 400 and "too easy to guess" in change.text
    anonymous = new_browser()
    await anonymous.post("/reset", {"email": email})
    token = outbox.last(email, "password_reset").link().split("token=")[1]
    reset = await anonymous.post("/reset/confirm", {"token": token, "password": "1234567890"})
    assert reset.status_code == 400 and "too easy to guess" in reset.text
    # the link still works for a good password
    good = await anonymous.post("/reset/confirm", {"token": token, "password": "plum vortex 88"})
    assert good.status_code == 303


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/account/delete", {"confirm": "yes"}),
        ("/account/password", {"new_password": "a fresh new passphrase"}),
        ("/account/email", {"new_email": "moved@example.com"}),
    ],
)
async def test_password_reentry_is_throttled(
    signed_in: SignedInUser, db: Database, path: str, form: dict[str, str]
) -> None:
    browser, user_id, _email = await signed_in()
    field = "current_password" if path == "/account/password" else "password"
    statuses = []
    for n in range(8):
        answer = await browser.post(path, {**form, field: f"{WRONG} {n}"}, page="/account")
        statuses.append(answer.status_code)
    free = throttle.PASSWORD_REENTRY.free
    assert statuses == [400] * free + [429] * (8 - free), statuses
    assert int(answer.headers["retry-after"]) > 0
    right = await browser.post(path, {**form, field: PASSWORD}, page="/account")
    assert right.status_code == 429  # waits like a guess would
    async with db.session() as session:
        assert await session.get(User, user_id) is not None


# 9. Input edges ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/usage?to=9999-12-31", "/api/usage?to=9999-12-31"])
async def test_the_last_representable_day_is_a_valid_end_date(
    signed_in: SignedInUser, path: str
) -> None:
    browser, _id, _email = await signed_in()
    answer = await browser.get(path)
    assert answer.status_code == 200
    assert answer.headers.get("x-content-type-options") == "nosniff"


@pytest.mark.parametrize(
    "address",
    ['"<>"@example.com', 'a"<>@example.com', "a@b@example.com", "two words@example.com"],
)
async def test_malformed_addresses_are_refused(
    browser: Browser, db: Database, outbox: Outbox, address: str
) -> None:
    answer = await browser.sign_up(address)
    assert answer.status_code == 400 and "valid email address" in answer.text
    assert outbox.all() == []
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize(
    "name", ["Eve\r\nBcc: all@example.com", "Eve\nMallory", "Eve\x00", "E\u2028ve"]
)
async def test_names_with_control_characters_are_refused(
    browser: Browser, signed_in: SignedInUser, outbox: Outbox, name: str
) -> None:
    answer = await browser.sign_up("eve@example.com", name=name)
    assert answer.status_code == 400
    assert outbox.to("eve@example.com") == []

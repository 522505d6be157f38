"""Abuse limits kept in the database, so every worker and instance shares the count.

A `Rule` lets `free` hits through in its window; past that, each hit must wait: either
until the window ends (mail) or a delay that doubles with every further hit (password
guesses). `take` counts and decides in one conditional UPDATE on the key's row, so hits
sent in parallel are counted exactly like hits sent one after another. Callers commit
the hit before doing the slow work it guards (checking a password), and a refused hit
is not counted (a waiting client cannot extend its own wait).

Sign-in is limited per (account, client) pair, not per account: guesses from one place
slow down only that place, and the owner signs in from theirs (no lock-out as a weapon).
A looser per-client limit slows a password spray across many accounts. Keys are digests
of the normalised email whether or not an account has it, so a limit reveals nothing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.models import ThrottleCounter
from portal.db.base import utcnow
from portal.db.upsert import WITHOUT_SESSION_SYNC, insert_ignore

__all__ = [
    "CONNECT_EXCHANGE",
    "MAIL_CLIENT",
    "MAIL_RECIPIENT",
    "PASSWORD_REENTRY",
    "SIGN_IN_CLIENT",
    "SIGN_IN_PAIR",
    "Rule",
    "account_key",
    "clear_account",
    "forget",
    "give_back",
    "take",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Rule:
    name: str
    free: int  # hits let through in a window before any wait
    window: timedelta  # the count starts over this long after its first hit
    delay: timedelta | None = None  # first wait after `free` hits, doubled per hit; None:
    longest: timedelta | None = None  # wait for the window's end instead

    def wait_after(self, hits: int, window_start: datetime, now: datetime) -> timedelta:
        """How long the next hit must wait once this one made `hits`."""
        if hits < self.free:
            return timedelta(0)
        if self.delay is None:
            return window_start + self.window - now
        growth = min(hits - self.free, 20)  # 2**20 × delay is past any sensible cap
        wait = self.delay * (1 << growth)  # 2**growth; growth >= 0
        return min(wait, self.longest) if self.longest is not None else wait


# Guessing one account's password from one client: 5 tries, then 30 s, 1, 2, 4… min, at
# most 15 min between tries; a successful sign-in from that client starts over.
SIGN_IN_PAIR = Rule("sign-in", 5, timedelta(hours=24), timedelta(seconds=30), timedelta(minutes=15))
# One client guessing across accounts (spraying): generous, since offices share an address.
SIGN_IN_CLIENT = Rule(
    "sign-in-client", 50, timedelta(hours=1), timedelta(seconds=1), timedelta(minutes=5)
)
# Re-entering the password to change it, change the email or delete the account.
PASSWORD_REENTRY = Rule(
    "password-reentry", 5, timedelta(hours=24), timedelta(seconds=30), timedelta(minutes=15)
)
# Mail that anyone can make us send to an address (reset, sign-up notices, verification).
MAIL_RECIPIENT = Rule("mail-to", 3, timedelta(hours=1))
# Anonymous requests that send mail (sign-up, reset) from one client.
MAIL_CLIENT = Rule("mail-client", 20, timedelta(hours=1))
# Apps exchanging connect codes for tokens from one client (`portal.connect`): a real app
# makes one exchange per approval; a guesser waits for the window's end.
CONNECT_EXCHANGE = Rule("connect-exchange", 30, timedelta(minutes=10))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def account_key(email: str) -> str:
    """The subject of every row about one address (account or not)."""
    return _digest(f"account:{email.strip().lower()}")


def _key(rule: Rule, parts: tuple[str, ...]) -> str:
    return _digest("\x00".join((rule.name, *parts)))


async def take(session: AsyncSession, rule: Rule, *parts: str, email: str | None = None) -> int:
    """Count one hit on `rule` for `parts` (e.g. an email and a client address) and
    return 0, or the whole seconds to wait if the hit is refused (and not counted).
    `email` marks the row as concerning that address (export, deletion)."""
    key = _key(rule, parts)
    now = utcnow()
    await insert_ignore(
        session,
        ThrottleCounter,
        key_hash=key,
        subject_hash=account_key(email) if email is not None else None,
        hits=0,
        window_start=now,
        blocked_until=_EPOCH,
    )
    expired = ThrottleCounter.window_start <= now - rule.window
    counted = (
        await session.execute(
            update(ThrottleCounter)
            .where(ThrottleCounter.key_hash == key, ThrottleCounter.blocked_until <= now)
            .values(
                hits=case((expired, 1), else_=ThrottleCounter.hits + 1),
                window_start=case((expired, now), else_=ThrottleCounter.window_start),
            )
            .returning(ThrottleCounter.hits, ThrottleCounter.window_start)
            .execution_options(**WITHOUT_SESSION_SYNC)
        )
    ).one_or_none()
    if counted is None:  # waiting: the row's lock is ours until commit, so this is stable
        blocked_until = await session.scalar(
            select(ThrottleCounter.blocked_until).where(ThrottleCounter.key_hash == key)
        )
        if blocked_until is None:  # deleted since our insert (a sign-in cleared it): recount
            return await take(session, rule, *parts, email=email)
        return max(1, math.ceil((blocked_until - now).total_seconds()))
    hits, window_start = counted
    wait = rule.wait_after(hits, _aware(window_start), now)
    if wait > timedelta(0):
        await session.execute(
            update(ThrottleCounter)
            .where(ThrottleCounter.key_hash == key)
            .values(blocked_until=now + wait)
            .execution_options(**WITHOUT_SESSION_SYNC)
        )
    return 0


async def forget(session: AsyncSession, rule: Rule, *parts: str) -> None:
    """Start `rule`'s count for `parts` over (the right password was given)."""
    await session.execute(
        delete(ThrottleCounter)
        .where(ThrottleCounter.key_hash == _key(rule, parts))
        .execution_options(**WITHOUT_SESSION_SYNC)
    )


async def give_back(session: AsyncSession, rule: Rule, *parts: str) -> None:
    """Uncount one hit (a sign-in that succeeded does not count against its client)."""
    await session.execute(
        update(ThrottleCounter)
        .where(ThrottleCounter.key_hash == _key(rule, parts), ThrottleCounter.hits > 0)
        .values(hits=ThrottleCounter.hits - 1)
        .execution_options(**WITHOUT_SESSION_SYNC)
    )


async def clear_account(session: AsyncSession, email: str) -> None:
    """Forget every count about an address (account deletion)."""
    await session.execute(
        delete(ThrottleCounter)
        .where(ThrottleCounter.subject_hash == account_key(email))
        .execution_options(**WITHOUT_SESSION_SYNC)
    )


def _aware(value: datetime) -> datetime:
    """RETURNING bypasses the column type on SQLite: naive there, UTC by construction."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)

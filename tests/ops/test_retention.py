"""`gateway-admin retention run` on a seeded database: exactly what the rules say is
removed or anonymised, nothing else; a dry run counts the same rows and changes nothing.

Every test runs on SQLite and on PostgreSQL, on a database no gateway runs on (`db` here
is `unswept_db`): the seed includes an expired hold, which a gateway's background job
would release in the middle of a test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from portal.accounts.models import AccountLink, LinkPurpose, ThrottleCounter, User
from portal.accounts.service import create_user
from portal.billing.models import StripeEvent
from portal.config.plugin_settings import RetentionSettings
from portal.connect.models import ConnectCode
from portal.credits import ledger
from portal.credits.models import CauseType, CreditAccount, EntryKind, LedgerEntry, Reservation
from portal.db import Database
from portal.db.base import utcnow
from portal.db.migrate import upgrade
from portal.email.models import EmailLogEntry
from portal.models import Base
from portal.retention.rules import ANONYMISED
from portal.retention.service import run_retention
from portal.sessions.models import WebSession
from portal.tokens.models import GatewayToken
from portal.usage.models import CallStatus, UsageRecord


@pytest.fixture
def db(unswept_db: Database) -> Database:
    return unswept_db


SETTINGS = RetentionSettings(
    usage_days=30,
    usage_action="anonymise",
    ledger_years=2,
    token_grace_days=7,
    sign_in_failure_days=1,
    email_log_days=90,
)
DAY = timedelta(days=1)


@dataclass
class Seeded:
    """Ids of the rows each rule must touch (`gone`/`old`) and must leave (`kept`)."""

    user_id: str
    old_usage: list[int] = field(default_factory=list)
    recent_usage: list[int] = field(default_factory=list)
    old_ledger: list[int] = field(default_factory=list)
    old_ledger_sum: int = 0
    balance: int = 0
    gone: dict[type, set[object]] = field(default_factory=dict)
    kept: dict[type, set[object]] = field(default_factory=dict)


async def seed(db: Database, now: datetime) -> Seeded:
    async with db.transaction() as session:
        user = await create_user(
            session, email=f"kept-{uuid.uuid4().hex[:8]}@example.com", name="K", verified=True
        )
        await ledger.ensure_account(session, user.id)
        seeded = Seeded(user.id)

        def token(name: str, **when: datetime) -> GatewayToken:
            row = GatewayToken(
                user_id=user.id, name=name, prefix="wfg_x", token_hash=uuid.uuid4().hex, **when
            )
            session.add(row)
            return row

        tokens_kept = [
            token("live"),
            token("revoked recently", revoked_at=now - 6 * DAY),
            token("expired recently", expires_at=now - 6 * DAY),
            token("expires later", expires_at=now + 30 * DAY),
        ]
        tokens_gone = [
            token("revoked long ago", revoked_at=now - 8 * DAY),
            token("expired long ago", expires_at=now - 8 * DAY),
        ]
        await session.flush()

        # Usage (window 30 days), each with its ledger debit.
        for age, bucket in (
            (31, seeded.old_usage),
            (31, seeded.old_usage),
            (29, seeded.recent_usage),
        ):
            started = now - age * DAY
            record = UsageRecord(
                call_id=str(uuid.uuid4()), user_id=user.id, token_id=tokens_kept[0].id,
                model="gpt-4.1-nano", status=CallStatus.SUCCESS, prompt_tokens=10,
                completion_tokens=20, credits=7, started_at=started,
                ended_at=started + timedelta(seconds=2), created_at=started,
            )  # fmt: skip
            session.add(record)
            await session.flush()
            bucket.append(record.id)
            await ledger.post_entry(
                session, user_id=user.id, amount=-7, kind=EntryKind.DEBIT,
                cause_type=CauseType.USAGE, cause_id=record.call_id, usage_record_id=record.id,
            )  # fmt: skip

        # Ledger (legal window 2 years): two old entries of this user, one of a deleted one.
        for amount, age_days in ((1000, 800), (-100, 750), (500, 700)):
            await ledger.post_entry(
                session, user_id=user.id, amount=amount, kind=EntryKind.GRANT,
                cause_type=CauseType.ADMIN, cause_id=str(uuid.uuid4()), note="seed",
            )  # fmt: skip
            entry = await session.scalar(select(LedgerEntry).order_by(LedgerEntry.id.desc()))
            entry.created_at = now - age_days * DAY
            if age_days > 730:
                seeded.old_ledger.append(entry.id)
                seeded.old_ledger_sum += amount
        orphan = LedgerEntry(
            user_id=None, amount=-5, kind=EntryKind.DEBIT, cause_type=CauseType.ADMIN,
            cause_id=str(uuid.uuid4()), note="of a deleted account", created_at=now - 900 * DAY,
        )  # fmt: skip
        session.add(orphan)
        await session.flush()
        seeded.old_ledger.append(orphan.id)

        events = [
            StripeEvent(id=f"evt_{uuid.uuid4().hex}", type="invoice.paid", received_at=at)
            for at in (now - 731 * DAY, now - 700 * DAY)
        ]
        holds = [
            Reservation(
                call_id=str(uuid.uuid4()),
                user_id=user.id,
                amount=amount,
                created_at=now - timedelta(minutes=20),
                expires_at=expiry,
            )
            for amount, expiry in ((50, now - timedelta(minutes=1)), (70, now + timedelta(hours=1)))
        ]
        account = await session.get(CreditAccount, user.id)
        account.reserved += 120
        sessions = [
            WebSession(
                user_id=user.id, session_hash=uuid.uuid4().hex, last_seen_at=now, expires_at=at
            )
            for at in (now - timedelta(minutes=1), now + DAY)
        ]
        links = [
            AccountLink(
                user_id=user.id,
                purpose=LinkPurpose.VERIFY_EMAIL,
                token_hash=uuid.uuid4().hex,
                expires_at=at,
            )
            for at in (now - timedelta(minutes=1), now + DAY)
        ]
        failures = [
            ThrottleCounter(
                key_hash=uuid.uuid4().hex,
                hits=3,
                window_start=now - age,
                blocked_until=now - age + timedelta(minutes=15),
            )
            for age in (DAY + timedelta(hours=1), timedelta(hours=23))
        ]
        codes = [
            ConnectCode(
                user_id=user.id,
                code_hash=uuid.uuid4().hex,
                code_challenge="c" * 43,
                callback_url="http://127.0.0.1:9/cb",
                app_name="app",
                expires_at=expiry,
                token_id=token_id,
            )
            for expiry, token_id in (
                (now - timedelta(minutes=1), None),  # never exchanged, expired: gone
                (now - 9 * DAY, tokens_kept[0].id),  # became a live token: kept
                (now + timedelta(minutes=4), None),  # still exchangeable: kept
            )
        ]
        mails = [
            EmailLogEntry(user_id=user.id, kind="low_balance", sent_at=now - age * DAY)
            for age in (91, 89)
        ]
        session.add_all([*events, *holds, *sessions, *links, *codes, *failures, *mails])
        await session.flush()
        seeded.balance = await ledger.balance(session, user.id)

    for model, rows in (
        (GatewayToken, (tokens_gone, tokens_kept)),
        (StripeEvent, ([events[0]], [events[1]])),
        (Reservation, ([holds[0]], [holds[1]])),
        (WebSession, ([sessions[0]], [sessions[1]])),
        (AccountLink, ([links[0]], [links[1]])),
        (ConnectCode, ([codes[0]], codes[1:])),
        (ThrottleCounter, ([failures[0]], [failures[1]])),
        (EmailLogEntry, ([mails[0]], [mails[1]])),
    ):
        seeded.gone[model] = {_key(row) for row in rows[0]}
        seeded.kept[model] = {_key(row) for row in rows[1]}
    return seeded


EXPECTED = {
    "usage-records": 2,
    "ledger-entries": 3,
    "stripe-events": 1,
    "reservations": 1,
    "gateway-tokens": 2,
    "web-sessions": 1,
    "account-links": 1,
    "connect-codes": 1,
    "throttle-counters": 1,
    "email-log": 1,
}


def _key(row: object) -> object:
    return inspect(row).identity[0]


async def snapshot(db: Database) -> dict[str, list[tuple[object, ...]]]:
    async with db.session() as session:
        return {
            table.name: sorted(
                (tuple(row) for row in (await session.execute(select(table))).all()), key=repr
            )
            for table in Base.metadata.sorted_tables
        }


async def test_a_dry_run_counts_what_each_rule_would_change_and_changes_nothing(
    db: Database,
) -> None:
    now = utcnow()
    await seed(db, now)
    before = await snapshot(db)

    outcomes = await run_retention(db, SETTINGS, dry_run=True, now=now)

    assert {o.name: o.rows for o in outcomes} == EXPECTED
    assert await snapshot(db) == before


async def test_a_run_removes_and_anonymises_exactly_what_the_rules_say(db: Database) -> None:
    now = utcnow()
    seeded = await seed(db, now)

    outcomes = await run_retention(db, SETTINGS, now=now, batch_size=1)

    assert {o.name: o.rows for o in outcomes} == EXPECTED
    async with db.session() as session:
        for model, gone in seeded.gone.items():
            ids = set(await session.scalars(select(model.__mapper__.primary_key[0])))
            assert not ids & gone, model.__name__
            assert seeded.kept[model] <= ids, model.__name__

        usage = {r.id: r for r in await session.scalars(select(UsageRecord))}
        for record_id in seeded.old_usage:
            old = usage[record_id]
            assert (old.user_id, old.token_id) == (None, None)
            assert old.call_id == f"{ANONYMISED}{record_id}"
            assert (old.started_at.hour, old.started_at.minute, old.ended_at.second) == (0, 0, 0)
            assert (old.model, old.prompt_tokens, old.credits) == ("gpt-4.1-nano", 10, 7)
        recent = usage[seeded.recent_usage[0]]
        assert recent.user_id == seeded.user_id and not recent.call_id.startswith(ANONYMISED)
        debits = list(
            await session.scalars(
                select(LedgerEntry).where(LedgerEntry.cause_type == CauseType.USAGE)
            )
        )
        linked = {d.usage_record_id for d in debits if d.usage_record_id is not None}
        assert linked == set(seeded.recent_usage)  # no debit points at an anonymised call

        entries = {e.id: e for e in await session.scalars(select(LedgerEntry))}
        for entry_id in seeded.old_ledger:
            old = entries[entry_id]
            assert (old.user_id, old.note, old.cause_id) == (None, None, f"{ANONYMISED}{entry_id}")
        carried = [e for e in entries.values() if e.kind == EntryKind.CARRY_FORWARD]
        assert {e.user_id for e in carried} == {seeded.user_id}
        assert sum(e.amount for e in carried) == seeded.old_ledger_sum

        # The balance is untouched and still the sum of the person's ledger.
        assert await ledger.balance(session, seeded.user_id) == seeded.balance
        assert await ledger.ledger_sum(session, seeded.user_id) == seeded.balance
        account = await session.get(CreditAccount, seeded.user_id)
        assert account.reserved == 70  # the expired hold of 50 was released
        assert await session.get(User, seeded.user_id) is not None

    again = await run_retention(db, SETTINGS, now=now)
    assert {o.name: o.rows for o in again} == dict.fromkeys(EXPECTED, 0)


async def test_usage_records_can_be_deleted_instead(db: Database) -> None:
    now = utcnow()
    seeded = await seed(db, now)
    settings = SETTINGS.model_copy(update={"usage_action": "delete"})

    outcomes = await run_retention(db, settings, now=now)

    assert {o.name: (o.rows, o.verb) for o in outcomes}["usage-records"] == (2, "deleted")
    async with db.session() as session:
        assert set(await session.scalars(select(UsageRecord.id))) == set(seeded.recent_usage)
        debits = list(
            await session.scalars(
                select(LedgerEntry).where(LedgerEntry.cause_type == CauseType.USAGE)
            )
        )
        assert len(debits) == 3  # the accounting rows stay for the legal window
        assert {d.usage_record_id for d in debits} == {None, *seeded.recent_usage}


def test_the_command_dry_run_reports_each_rule_and_changes_nothing(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'retention.db'}"
    upgrade(database_url)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("WFG_DATABASE_URL", "REDIS_URL")},
        "DATABASE_URL": database_url,
        "WFG_VAR_DIR": str(tmp_path / "var"),
    }
    admin = Path(sys.executable).parent / "gateway-admin"

    dry = subprocess.run(
        [admin, "retention", "run", "--dry-run"], env=env, capture_output=True, text=True
    )

    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "retention: dry run, nothing was changed"
    assert [line.split()[0] for line in lines[1:]] == list(EXPECTED)
    assert all(line.split()[1] == "0" for line in lines[1:])

"""Gateway tokens: shown once, stored only as a SHA-256, refused for every reason a
user could hit, and never revocable by someone else."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from portal.accounts import service as accounts
from portal.accounts.models import User
from portal.db import Database, utcnow
from portal.errors import (
    AccountSuspended,
    AuthenticationFailed,
    EmailNotVerified,
    GatewayError,
    InvalidToken,
    NotFound,
    TokenExpired,
    TokenRevoked,
)
from portal.models import Base
from portal.tokens import service as tokens
from portal.tokens.models import GatewayToken
from portal.tokens.secrets import new_token
from tests.fixtures.gateway import MakeUser


async def authenticate(db: Database, token: str) -> tokens.TokenIdentity:
    async with db.session() as session:
        return await tokens.authenticate(session, token)


async def refusal(db: Database, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as refused:
        await authenticate(db, token)
    assert not token or token not in refused.value.message
    return refused.value


async def every_stored_value(db: Database) -> str:
    """Every cell of every table, as text."""
    cells: list[str] = []
    async with db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(text(f'SELECT * FROM "{table.name}"'))).all():
                cells.extend(str(value) for value in row)
    return "\n".join(cells)


async def test_create_returns_a_256_bit_token_and_stores_only_its_hash(
    db: Database, make_user: MakeUser
) -> None:
    user = await make_user("1")
    async with db.transaction() as session:
        owner = await session.get(User, user.user_id)
        assert owner is not None
        plaintext, row = await tokens.create_token(session, owner, name="  laptop  ")
    assert plaintext.startswith("wfg_") and len(plaintext) == 47
    assert (row.name, row.prefix) == ("laptop", plaintext[:10])
    assert row.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()

    stored = await every_stored_value(db)
    assert row.token_hash in stored
    for secret in (plaintext, user.token):
        assert secret not in stored
        assert secret.removeprefix("wfg_") not in stored
        assert secret[4:24] not in stored  # not even a long piece of it
    if db.url.get_backend_name() == "sqlite":  # the file itself, not just what SQL shows
        files = [Path(f"{db.url.database}{suffix}") for suffix in ("", "-wal")]
        raw = b"".join(path.read_bytes() for path in files if path.exists())
        assert row.token_hash.encode() in raw
        assert plaintext.encode() not in raw

    identity = await authenticate(db, plaintext)
    assert (identity.user_id, identity.token_id) == (user.user_id, row.id)
    assert plaintext not in repr(identity)


async def test_names_must_be_sensible(db: Database, make_user: MakeUser) -> None:
    user = await make_user("1")
    async with db.transaction() as session:
        owner = await session.get(User, user.user_id)
        assert owner is not None
        for name in ("", "   ", "x" * 101):
            with pytest.raises(ValueError, match="1 to 100"):
                await tokens.create_token(session, owner, name=name)


async def test_wrong_tokens_are_invalid(db: Database, make_user: MakeUser) -> None:
    user = await make_user("1")
    for wrong in (
        "",
        "wfg_",
        "Bearer " + user.token,
        user.token[:-1],
        user.token[:-1] + ("A" if user.token[-1] != "A" else "B"),
        user.token.upper(),
        new_token(),  # well-formed, never issued
        hashlib.sha256(user.token.encode()).hexdigest(),  # the stored hash is not a token
    ):
        refused = await refusal(db, wrong)
        assert type(refused) is InvalidToken, wrong
        assert refused.status_code == 401


async def test_revoked_and_expired_tokens_are_refused(db: Database, make_user: MakeUser) -> None:
    user = await make_user("1")
    assert (await authenticate(db, user.token)).user_id == user.user_id
    async with db.transaction() as session:
        revoked = await tokens.revoke_token(session, user_id=user.user_id, token_id=user.token_id)
        first_revocation = revoked.revoked_at
        again = await tokens.revoke_token(session, user_id=user.user_id, token_id=user.token_id)
        assert again.revoked_at == first_revocation  # revoking twice is harmless
    refused = await refusal(db, user.token)
    assert isinstance(refused, TokenRevoked) and isinstance(refused, AuthenticationFailed)
    assert refused.status_code == 401

    async with db.transaction() as session:
        owner = await session.get(User, user.user_id)
        assert owner is not None
        expired, _ = await tokens.create_token(
            session, owner, name="old", expires_at=utcnow() - timedelta(seconds=1)
        )
        current, _ = await tokens.create_token(
            session, owner, name="new", expires_at=utcnow() + timedelta(days=1)
        )
    refused = await refusal(db, expired)
    assert isinstance(refused, TokenExpired) and refused.status_code == 401
    assert (await authenticate(db, current)).user_id == user.user_id


async def test_suspended_and_unverified_accounts_are_refused(
    db: Database, make_user: MakeUser
) -> None:
    unverified = await make_user("1", verified=False)
    refused = await refusal(db, unverified.token)
    assert isinstance(refused, EmailNotVerified) and refused.status_code == 403

    suspended = await make_user("1")
    async with db.transaction() as session:
        assert await accounts.suspend_user(session, suspended.user_id)
    refused = await refusal(db, suspended.token)
    assert isinstance(refused, AccountSuspended) and refused.status_code == 403


async def test_one_user_cannot_revoke_or_list_anothers_tokens(
    db: Database, make_user: MakeUser
) -> None:
    alice, mallory = await make_user("1"), await make_user("1")
    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await tokens.revoke_token(session, user_id=mallory.user_id, token_id=alice.token_id)
        with pytest.raises(NotFound):
            await tokens.revoke_token(session, user_id=alice.user_id, token_id="no-such-token")
        listed = await tokens.list_tokens(session, mallory.user_id)
    assert [t.id for t in listed] == [mallory.token_id]
    assert (await authenticate(db, alice.token)).user_id == alice.user_id
    async with db.session() as session:
        row = await session.scalar(select(GatewayToken).where(GatewayToken.id == alice.token_id))
    assert row is not None and row.revoked_at is None


async def test_last_used_is_recorded_at_most_once_a_minute(
    db: Database, make_user: MakeUser
) -> None:
    user = await make_user("1")
    first = utcnow()

    async def last_used() -> object:
        async with db.session() as session:
            token = await session.get(GatewayToken, user.token_id, populate_existing=True)
            assert token is not None
            return token.last_used_at

    async def touch(when: object) -> None:
        async with db.transaction() as session:
            await tokens.touch_last_used(session, user.token_id, when)  # type: ignore[arg-type]

    assert await last_used() is None
    await touch(first)
    await touch(first + timedelta(seconds=30))
    assert await last_used() == first
    await touch(first + timedelta(minutes=2))
    assert await last_used() == first + timedelta(minutes=2)

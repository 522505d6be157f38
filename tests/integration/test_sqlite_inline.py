"""The gateway's SQLite driver (`portal.db.sqlite_inline`): statements run on the event
loop thread, so waiting for another process's lock must happen in asyncio, never by
blocking the loop; past the limit it is a clear error; a commit is durable and a
rollback leaves nothing.

Nothing here waits on a wall clock for correctness: the lock holder is a separate
process that holds its write lock until the test tells it to let go."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from portal.db import Database, open_database, sqlite_inline

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("INSERT INTO t (v) VALUES ('other process')")
    print("locked", flush=True)
    sys.stdin.readline()
    connection.execute("COMMIT")
    print("released", flush=True)
    """
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "inline.db"
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return path


@asynccontextmanager
async def inline_db(path: Path, **options: float) -> AsyncIterator[Database]:
    database = open_database(
        f"sqlite:///{path}", pool_size=4, max_overflow=0, inline_sqlite=True, **options
    )
    try:
        yield database
    finally:
        await database.dispose()


@asynccontextmanager
async def write_lock_in_another_process(path: Path) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another process holds the write lock (BEGIN IMMEDIATE, one uncommitted row) until
    the yielded function commits it."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    stdin, stdout = holder.stdin, holder.stdout
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            stdin.write(b"go\n")
            await stdin.drain()
            assert await stdout.readline() == b"released\n"

    try:
        assert await stdout.readline() == b"locked\n"
        yield release
        await release()
    finally:
        if holder.returncode is None and not stdin.is_closing():
            stdin.close()
        await holder.wait()


async def insert(database: Database, value: str) -> None:
    async with database.transaction() as session:
        await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})


def rows(path: Path) -> list[str]:
    """What a separate sqlite3 connection sees."""
    with closing(sqlite3.connect(path)) as connection:
        return [v for (v,) in connection.execute("SELECT v FROM t ORDER BY id")]


async def test_a_write_waits_for_another_process_s_lock_while_the_loop_keeps_running(
    path: Path,
) -> None:
    async with inline_db(path) as database, write_lock_in_another_process(path) as release:
        writer = asyncio.create_task(insert(database, "gateway"))
        ticks = 0
        while ticks < 50:  # an unrelated coroutine on the same loop keeps being served
            await asyncio.sleep(0.002)
            ticks += 1
        assert not writer.done()  # ... while the write is still waiting for the lock
        # Reads are not held up behind the waiting writer (another pooled connection).
        async with database.session() as session:
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        await release()
        await asyncio.wait_for(writer, 25)  # lands once the lock is released
    assert rows(path) == ["other process", "gateway"]


async def test_a_lock_held_past_the_limit_is_a_clear_error(path: Path) -> None:
    async with inline_db(path, sqlite_lock_timeout=0.2) as database:
        async with write_lock_in_another_process(path) as release:
            with pytest.raises(OperationalError, match=r"database is locked.*0\.2 s"):
                await insert(database, "too late")
            await release()
        await insert(database, "after")  # the connection is fine afterwards
    assert rows(path) == ["other process", "after"]


async def test_a_write_transaction_of_this_process_held_past_the_limit_is_a_clear_error(
    path: Path,
) -> None:
    async with inline_db(path, sqlite_lock_timeout=0.2) as database:
        done = asyncio.Event()
        in_transaction = asyncio.Event()

        async def slow() -> None:
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('slow')"))
                in_transaction.set()
                await done.wait()

        holder = asyncio.create_task(slow())
        await in_transaction.wait()
        with pytest.raises(OperationalError, match=r"this process.*0\.2 s"):
            await insert(database, "too late")
        done.set()
        await holder
        await insert(database, "after")
    assert rows(path) == ["slow", "after"]


async def test_write_transactions_of_two_coroutines_queue_instead_of_interleaving(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy: list[str] = []
    is_busy = sqlite_inline._is_busy

    def counting(exc: sqlite3.OperationalError) -> bool:
        busy.append(str(exc))
        return is_busy(exc)

    monkeypatch.setattr(sqlite_inline, "_is_busy", counting)

    async def two_rows(name: str) -> None:
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{name}1"})
            await asyncio.sleep(0)  # suspended mid-transaction: the other one runs
            await asyncio.sleep(0)
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"{name}2"})

    async with inline_db(path) as database:
        await asyncio.gather(two_rows("a"), two_rows("b"), two_rows("c"))
    assert rows(path) == ["a1", "a2", "b1", "b2", "c1", "c2"]
    assert busy == []  # they queued in the process; none polled SQLite's lock


async def test_a_commit_is_visible_to_another_connection_and_a_rollback_is_not(
    path: Path,
) -> None:
    async with inline_db(path) as database:
        await insert(database, "committed")
        assert rows(path) == ["committed"]
        with pytest.raises(RuntimeError):
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('rolled back')"))
                raise RuntimeError("the caller fails after the write")
        assert rows(path) == ["committed"]
        # The connection holds no lock after the rollback: another writer gets in at once.
        with closing(sqlite3.connect(path, timeout=0)) as other, other:
            other.execute("INSERT INTO t (v) VALUES ('other')")
        assert rows(path) == ["committed", "other"]


def test_a_commit_survives_sigkill_of_the_process(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from sqlalchemy import text
        from portal.db import open_database

        async def main():
            database = open_database({f"sqlite:///{path}"!r}, inline_sqlite=True)
            async with database.transaction() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('settled')"))
            async with database.session() as session:  # a read open when killed
                await session.execute(text("SELECT * FROM t"))
                os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL
    assert rows(path) == ["settled"]


async def test_reads_before_the_first_write_run_outside_the_transaction(path: Path) -> None:
    """As with pysqlite's implicit BEGIN: a SELECT before the transaction's first write
    takes no lock, and the write then sees what others committed meanwhile (with a
    deferred BEGIN before the read, this write would fail with SQLITE_BUSY_SNAPSHOT)."""
    async with inline_db(path) as database, database.transaction() as session:
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        with closing(sqlite3.connect(path, timeout=0)) as other, other:
            other.execute("INSERT INTO t (v) VALUES ('other')")
        await session.execute(text("INSERT INTO t (v) VALUES ('mine')"))
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar() == 2
        # Now in the transaction: another writer is refused at once (busy_timeout 0).
        with (
            closing(sqlite3.connect(path, timeout=0)) as other,
            pytest.raises(sqlite3.OperationalError, match="locked"),
        ):
            other.execute("INSERT INTO t (v) VALUES ('refused')")
    assert rows(path) == ["other", "mine"]


async def test_savepoints_pragmas_and_checkpoint(path: Path) -> None:
    async with inline_db(path) as database:
        async with database.transaction() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('outer')"))
            with pytest.raises(RuntimeError):
                async with session.begin_nested():
                    await session.execute(text("INSERT INTO t (v) VALUES ('inner')"))
                    raise RuntimeError
        async with database.session() as session:
            pragmas = {
                name: (await session.execute(text(f"PRAGMA {name}"))).scalar()
                for name in (
                    "journal_mode",
                    "secure_delete",
                    "foreign_keys",
                    "synchronous",
                    "busy_timeout",
                )
            }
        assert pragmas == {
            "journal_mode": "wal",
            "secure_delete": 1,
            "foreign_keys": 1,
            "synchronous": 1,  # NORMAL
            "busy_timeout": 0,  # the waiting happens in asyncio
        }
        assert await database.checkpoint()
    assert rows(path) == ["outer"]


async def test_autocommit_isolation_level_writes_without_a_transaction(path: Path) -> None:
    """SQLAlchemy sets AUTOCOMMIT through aiosqlite's worker queue, which the inline
    connection stands in for; each statement then commits on its own."""
    async with inline_db(path) as database:
        async with database.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("INSERT INTO t (v) VALUES ('autocommitted')"))
            assert rows(path) == ["autocommitted"]  # before any COMMIT of ours
        await insert(database, "managed")  # managed transactions work as before
    assert rows(path) == ["autocommitted", "managed"]

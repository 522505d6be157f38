"""Everything a gateway left behind, as text to search for canaries: every row of every
table (reflected from the database itself, not from our models), `pg_dump` output on
PostgreSQL, the raw SQLite files (free pages keep deleted rows), and every file in the
gateway's working directory (its captured stdout/stderr, the settlement spool)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from portal.db import open_database
from portal.db.urls import is_sqlite, to_async_url

__all__ = ["database_dump", "files_dump"]


async def database_dump(database_url: str) -> str:
    database = open_database(database_url)
    parts: list[str] = []
    try:
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            assert tables, "no tables found: the dump would prove nothing"
            for table in tables:
                rows = (await connection.execute(text(f'SELECT * FROM "{table}"'))).all()
                parts.append(f"-- {table}: {len(rows)} rows\n" + "\n".join(map(repr, rows)))
    finally:
        await database.dispose()
    url = to_async_url(database_url)
    if is_sqlite(url):
        parts.append(files_dump([Path(f"{url.database}{suffix}") for suffix in ("", "-wal")]))
    elif pg_dump := shutil.which("pg_dump"):
        plain = make_url(database_url).set(drivername="postgresql")
        dumped = await asyncio.to_thread(
            subprocess.run,
            [pg_dump, "--dbname", plain.render_as_string(hide_password=False)],
            capture_output=True,
            check=True,
            timeout=120,
        )
        parts.append(dumped.stdout.decode("utf-8", errors="replace"))
    return "\n".join(parts)


def files_dump(paths: list[Path]) -> str:
    """The bytes of these files (directories: every file below them), decoded losslessly."""
    chunks: list[str] = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        chunks.extend(f.read_bytes().decode("latin-1") for f in files if f.exists())
    return "\n".join(chunks)

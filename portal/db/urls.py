"""Accept the URLs operators write (`sqlite:///path`, `postgresql://…`, `postgres://…`)
and turn them into the async drivers we use (aiosqlite, asyncpg)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url

__all__ = ["is_sqlite", "to_async_url"]

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
}


def to_async_url(raw: str) -> URL:
    """Normalise a database URL to its async driver; refuse anything else clearly."""
    try:
        url = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ValueError("DATABASE_URL is not a valid database URL") from exc
    backend = url.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"DATABASE_URL must be sqlite:///path or postgresql://…, not {backend}://")
    url = url.set(drivername=_ASYNC_DRIVERS[backend])
    if backend == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if backend == "postgresql" and "sslmode" in url.query:
        # libpq spells it sslmode, asyncpg spells it ssl
        query = dict(url.query)
        query["ssl"] = query.pop("sslmode")
        url = url.set(query=query)
    return url


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"

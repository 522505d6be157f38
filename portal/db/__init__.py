"""Database plumbing: URL normalisation, the async engine and sessions, the model base."""

from portal.db.base import Base, utcnow
from portal.db.engine import Database, Executor, dialect_name, open_database
from portal.db.urls import to_async_url

__all__ = [
    "Base",
    "Database",
    "Executor",
    "dialect_name",
    "open_database",
    "to_async_url",
    "utcnow",
]

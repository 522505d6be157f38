"""Database plumbing: URL normalisation, the async engine and sessions, the model base."""

from portal.db.base import Base, utcnow
from portal.db.engine import Database, open_database
from portal.db.urls import to_async_url

__all__ = ["Base", "Database", "open_database", "to_async_url", "utcnow"]

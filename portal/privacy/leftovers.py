"""What an account deletion leaves outside the database transaction, cleared after it.

- SQLite's write-ahead log (`<db>-wal`) keeps the deleted rows' old pages until a
  checkpoint; `Database.checkpoint` copies the zeroed pages (secure_delete) into the
  database file and truncates the log.
- The development mail outbox keeps `.eml` files naming the person (address, name, token
  names): every message to or mentioning one of their addresses is removed, the
  confirmation of the deletion included. With SMTP nothing is kept.

PostgreSQL keeps dead row versions until (auto)vacuum reclaims them; see docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from portal.db import Database
from portal.email.service import Mailer

__all__ = ["erase_leftovers"]


async def erase_leftovers(database: Database, mailer: Mailer, addresses: Iterable[str]) -> None:
    """Run after the deletion committed and its confirmation was sent."""
    await mailer.transport.forget(addresses)
    await database.checkpoint()

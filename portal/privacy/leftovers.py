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

import logging
from collections.abc import Iterable

from portal.db import Database
from portal.email.service import Mailer

__all__ = ["erase_leftovers"]

log = logging.getLogger(__name__)


async def erase_leftovers(database: Database, mailer: Mailer, addresses: Iterable[str]) -> None:
    """Run after the deletion committed and its confirmation was sent. The account is
    already gone, so a failure here is logged (by kind) rather than shown to the person."""
    try:
        await mailer.transport.forget(addresses)
    except OSError as exc:
        log.error("outbox not cleared after an account deletion: %s", type(exc).__name__)
    try:
        await database.checkpoint()
    except Exception as exc:  # the next checkpoint (automatic, or at shutdown) still runs
        log.error("no checkpoint after an account deletion: %s", type(exc).__name__)

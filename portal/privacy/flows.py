"""Privacy actions a person takes from the Account page or the JSON API: one flow per
action, shared by both views."""

from __future__ import annotations

from dataclasses import dataclass

from portal.accounts.models import User
from portal.db import Database
from portal.errors import NotFound
from portal.privacy.export import build_export, export_filename, export_json

__all__ = ["ExportFile", "export_account"]


@dataclass(frozen=True)
class ExportFile:
    content: bytes
    """The JSON document (format `privacy.export.EXPORT_FORMAT`)."""
    filename: str


async def export_account(db: Database, *, user_id: str) -> ExportFile:
    """Everything held about `user_id`, read in one consistent snapshot."""
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("no such account")
        document = await build_export(session, user)
    return ExportFile(export_json(document), export_filename())

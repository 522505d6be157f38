"""Files the portal hands to a browser as downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

from fastapi.responses import Response, StreamingResponse

from portal.credits.units import format_units
from portal.db import Database
from portal.db.base import utcnow
from portal.privacy.flows import ExportFile
from portal.usage import service as usage_service
from portal.web.filters import UsageQuery

__all__ = ["USAGE_CSV_COLUMNS", "export_download", "usage_csv_download"]

USAGE_CSV_COLUMNS = (
    "started_at", "ended_at", "model", "token", "token_id", "status", "prompt_tokens",
    "completion_tokens", "cached_tokens", "reasoning_tokens", "credits", "credits_units",
    "http_status", "call_id",
)  # fmt: skip
_BATCH = 1000


def export_download(export: ExportFile) -> Response:
    """The account export as a JSON attachment (never cached)."""
    return Response(
        export.content,
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="{export.filename}"',
            "cache-control": "no-store",
        },
    )


def usage_csv_download(
    db: Database, user_id: str, query: UsageQuery, token_names: dict[str, str]
) -> Response:
    """The range's calls, oldest first, read in batches as the file is sent. Amounts are
    exact: `credits` a decimal string, `credits_units` the integer behind it."""

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(USAGE_CSV_COLUMNS)
        offset = 0
        while True:
            async with db.session() as session:
                rows = await usage_service.list_usage(
                    session, user_id, since=query.since, until=query.until,
                    limit=_BATCH, offset=offset,
                )  # fmt: skip
            for row in rows:
                token = token_names.get(row.token_id, "") if row.token_id else ""
                out.writerow(
                    (
                        row.started_at.isoformat(), row.ended_at.isoformat(), row.model,
                        token, row.token_id or "", row.status, row.prompt_tokens,
                        row.completion_tokens, row.cached_tokens, row.reasoning_tokens,
                        format_units(row.credits), row.credits, row.http_status or "",
                        row.call_id,
                    )
                )  # fmt: skip
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < _BATCH:
                return
            offset += _BATCH

    span = f"{query.start or 'start'}-to-{query.end or utcnow().date()}"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="usage-{span}.csv"',
            "cache-control": "no-store",
        },
    )

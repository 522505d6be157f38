"""Files the portal hands to a browser as downloads."""

from __future__ import annotations

from fastapi.responses import Response

from portal.privacy.flows import ExportFile

__all__ = ["export_download"]


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

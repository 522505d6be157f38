"""Files browsers ask for at fixed paths (the tab icon), served from `web/static`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)

_STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(
        _STATIC / "favicon.ico",
        media_type="image/vnd.microsoft.icon",
        headers={"cache-control": "public, max-age=86400"},
    )

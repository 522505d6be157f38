"""Dashboard (balance, daily chart, ledger, what we keep) and the usage table."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from portal.credits import ledger
from portal.credits.units import format_units, unit_base_name
from portal.usage import reports
from portal.usage import service as usage_service
from portal.usage.models import UsageRecord
from portal.web.charts import daily_usage_svg
from portal.web.deps import CurrentUser, DatabaseDep
from portal.web.filters import PAGE_SIZE, parse_usage_query
from portal.web.templating import render

router = APIRouter(include_in_schema=False)

LEDGER_PAGE = 25


def stored_fields(record: UsageRecord | None) -> list[tuple[str, object]]:
    """Every column of the usage record as stored (the "what we keep" panel); a column of
    ledger units reads "42000 units (0.000042 credits)", never as a bare number."""
    if record is None:
        return []
    fields: list[tuple[str, object]] = []
    for column in UsageRecord.__table__.columns:
        value = getattr(record, column.key)
        if unit_base_name(column.info) is not None and value is not None:
            value = f"{value} units ({format_units(value)} credits)"
        fields.append((column.name, value))
    return fields


@router.get("/dashboard", name="dashboard")
async def dashboard(request: Request, viewer: CurrentUser, db: DatabaseDep) -> Response:
    try:
        ledger_page = max(1, min(int(request.query_params.get("ledger_page", "1")), 100_000))
    except ValueError:
        ledger_page = 1
    user_id = viewer.user.id
    async with db.session() as session:
        balance = await ledger.balance(session, user_id)
        available = await ledger.available(session, user_id)
        days = await reports.daily_usage(session, user_id, days=30)
        entries = await ledger.list_entries(
            session, user_id, limit=LEDGER_PAGE + 1, offset=(ledger_page - 1) * LEDGER_PAGE
        )
        latest = await reports.latest_record(session, user_id)
    return render(
        request,
        "dashboard.html",
        {
            "viewer": viewer,
            "balance": balance,
            "available": available,
            "chart": daily_usage_svg(days),
            "days": days,
            "entries": entries[:LEDGER_PAGE],
            "ledger_page": ledger_page,
            "ledger_more": len(entries) > LEDGER_PAGE,
            "latest_fields": stored_fields(latest),
        },
    )


@router.get("/usage", name="usage")
async def usage(request: Request, viewer: CurrentUser, db: DatabaseDep) -> Response:
    params = request.query_params
    query = parse_usage_query(params.get("from"), params.get("to"), params.get("page"))
    async with db.session() as session:
        total = await reports.count_usage(
            session, viewer.user.id, since=query.since, until=query.until
        )
        rows = await usage_service.list_usage(
            session,
            viewer.user.id,
            since=query.since,
            until=query.until,
            limit=PAGE_SIZE,
            offset=query.offset,
            newest_first=True,
        )
    pages = max(1, -(-total // PAGE_SIZE))
    return render(
        request,
        "usage.html",
        {
            "viewer": viewer,
            "rows": rows,
            "query": query,
            "total": total,
            "pages": pages,
        },
        status_code=400 if query.error else 200,
    )

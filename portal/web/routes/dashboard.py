"""Dashboard (balance, daily chart, ledger, what we keep) and the usage table."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from portal.credits import ledger
from portal.credits import statement as credit_statement
from portal.credits.units import format_units, unit_base_name
from portal.tokens import service as tokens
from portal.usage import reports
from portal.usage import service as usage_service
from portal.usage.models import UsageRecord
from portal.web.charts import daily_usage_svg
from portal.web.deps import CurrentUser, DatabaseDep
from portal.web.downloads import usage_csv_download
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
        entries = await credit_statement.statement(
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
    user_id, since, until = viewer.user.id, query.since, query.until
    async with db.session() as session:
        total = await reports.count_usage(session, user_id, since=since, until=until)
        rows = await usage_service.list_usage(
            session,
            user_id,
            since=since,
            until=until,
            limit=PAGE_SIZE,
            offset=query.offset,
            newest_first=True,
        )
        by_model = await reports.totals_by(session, user_id, "model", since=since, until=until)
        by_token = await reports.totals_by(session, user_id, "token", since=since, until=until)
        token_names = {t.id: t.name for t in await tokens.list_tokens(session, user_id)}
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
            "by_model": by_model,
            "by_token": by_token,
            "token_names": token_names,
            "range_query": urlencode(
                {k: v for k, v in (("from", query.start), ("to", query.end)) if v}
            ),
        },
        status_code=400 if query.error else 200,
    )


@router.get("/usage.csv", name="usage_csv")
async def usage_csv(request: Request, viewer: CurrentUser, db: DatabaseDep) -> Response:
    """Every call of the chosen range (all pages), exact amounts, as a CSV download."""
    params = request.query_params
    query = parse_usage_query(params.get("from"), params.get("to"), None)
    if query.error:
        return RedirectResponse("/usage?" + urlencode(dict(params)), status_code=303)
    async with db.session() as session:
        token_names = {t.id: t.name for t in await tokens.list_tokens(session, viewer.user.id)}
    return usage_csv_download(db, viewer.user.id, query, token_names)

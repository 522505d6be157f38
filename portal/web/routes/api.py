"""The JSON API (`/api/…`): the dashboard's data for scripts and the desktop app's
settings page. Authenticated by the portal session cookie; POST and DELETE need the
`X-CSRF-Token` header (from `GET /api/me`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from portal.credits import ledger
from portal.credits.units import UNITS_PER_CREDIT, format_units
from portal.errors import NotFound
from portal.privacy import flows as privacy_flows
from portal.tokens import flows as token_flows
from portal.tokens import service as tokens
from portal.tokens.spending import SpendingLimit
from portal.usage import reports
from portal.usage import service as usage_service
from portal.web.cookies import csrf_token
from portal.web.deps import ApiUser, DatabaseDep, MailerDep, SettingsDep
from portal.web.downloads import export_download
from portal.web.filters import UsageQuery
from portal.web.routes.dashboard import stored_fields
from portal.web.schemas import (
    BalancePublic,
    DailyUsagePublic,
    LedgerEntryPublic,
    MePublic,
    StoredFieldsPublic,
    TokenCreate,
    TokenCreatedPublic,
    TokenLimitSet,
    TokenPublic,
    UsagePage,
    UsageRecordPublic,
)
from portal.web.token_limits import spending_limit_from

router = APIRouter(prefix="/api", tags=["portal api"])

NOT_STORED = (
    "Prompts, messages, files, tool calls and model replies are not among the stored "
    "fields: the usage table has no column that could hold them."
)


@router.get("/me", response_model=MePublic)
async def me(request: Request, viewer: ApiUser) -> MePublic:
    user = viewer.user
    return MePublic(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.is_verified,
        plan=user.plan,
        created_at=user.created_at,
        csrf_token=csrf_token(request),
    )


@router.get("/tokens", response_model=list[TokenPublic])
async def list_tokens(viewer: ApiUser, db: DatabaseDep) -> list[Any]:
    async with db.session() as session:
        return list(await tokens.list_tokens(session, viewer.user.id))


@router.post("/tokens", response_model=TokenCreatedPublic, status_code=201)
async def create_token(
    body: TokenCreate,
    viewer: ApiUser,
    db: DatabaseDep,
    mailer: MailerDep,
    settings: SettingsDep,
) -> TokenCreatedPublic:
    created = await token_flows.create_token(
        db,
        mailer,
        user_id=viewer.user.id,
        name=body.name,
        tokens_url=settings.portal_public_url.rstrip("/") + "/tokens",
        limit=_limit_of(body),
    )
    return TokenCreatedPublic(
        token=TokenPublic.model_validate(created.token),
        secret=created.plaintext,
        base_url=settings.gateway_public_url.rstrip("/") + "/v1",
    )


@router.put("/tokens/{token_id}/limit", response_model=TokenPublic)
async def set_token_limit(
    token_id: str, body: TokenLimitSet, viewer: ApiUser, db: DatabaseDep
) -> Any:
    """Set, change or (`limit: null`) remove a token's spending limit; the gateway applies
    it from the next call."""
    limit = _limit_of(body)
    try:
        return await token_flows.set_limit(
            db, user_id=viewer.user.id, token_id=token_id, limit=limit
        )
    except NotFound:
        raise HTTPException(404, "No such token.") from None


def _limit_of(body: TokenLimitSet) -> SpendingLimit | None:
    try:
        return spending_limit_from(body.limit, body.reset)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None


@router.delete("/tokens/{token_id}", response_model=TokenPublic)
async def revoke_token(token_id: str, viewer: ApiUser, db: DatabaseDep) -> Any:
    try:
        return await token_flows.revoke_token(db, user_id=viewer.user.id, token_id=token_id)
    except NotFound:
        raise HTTPException(404, "No such token.") from None


@router.get("/credits", response_model=BalancePublic)
async def credits(viewer: ApiUser, db: DatabaseDep) -> BalancePublic:
    async with db.session() as session:
        balance = await ledger.balance(session, viewer.user.id)
        available = await ledger.available(session, viewer.user.id)
    return BalancePublic(
        balance_units=balance,
        available_units=available,
        balance_credits=format_units(balance),
        available_credits=format_units(available),
        units_per_credit=UNITS_PER_CREDIT,
    )


@router.get("/ledger", response_model=list[LedgerEntryPublic])
async def ledger_entries(
    viewer: ApiUser,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[LedgerEntryPublic]:
    async with db.session() as session:
        entries = await ledger.list_entries(session, viewer.user.id, limit=limit, offset=offset)
    return [LedgerEntryPublic.of(entry) for entry in entries]


@router.get("/usage", response_model=UsagePage)
async def usage(
    viewer: ApiUser,
    db: DatabaseDep,
    start: Annotated[date | None, Query(alias="from", description="first UTC day")] = None,
    end: Annotated[date | None, Query(alias="to", description="last UTC day (inclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> UsagePage:
    if start and end and start > end:
        raise HTTPException(422, "`from` is after `to`.")
    query = UsageQuery(start, end, 1)
    async with db.session() as session:
        total = await reports.count_usage(
            session, viewer.user.id, since=query.since, until=query.until
        )
        rows = await usage_service.list_usage(
            session,
            viewer.user.id,
            since=query.since,
            until=query.until,
            limit=limit,
            offset=offset,
            newest_first=True,
        )
    items = [UsageRecordPublic.of(row) for row in rows]
    return UsagePage(total=total, limit=limit, offset=offset, items=items)


@router.get("/usage/daily", response_model=list[DailyUsagePublic])
async def usage_daily(
    viewer: ApiUser, db: DatabaseDep, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> list[DailyUsagePublic]:
    async with db.session() as session:
        totals = await reports.daily_usage(session, viewer.user.id, days=days)
    return [DailyUsagePublic.of(day) for day in totals]


@router.get("/usage/latest", response_model=StoredFieldsPublic)
async def usage_latest(viewer: ApiUser, db: DatabaseDep) -> StoredFieldsPublic:
    async with db.session() as session:
        record = await reports.latest_record(session, viewer.user.id)
    fields = dict(stored_fields(record)) if record else None
    return StoredFieldsPublic(fields=fields, not_stored=NOT_STORED)


@router.get(
    "/export",
    responses={200: {"content": {"application/json": {}}, "description": "Everything held"}},
)
async def export(viewer: ApiUser, db: DatabaseDep) -> Response:
    return export_download(await privacy_flows.export_account(db, user_id=viewer.user.id))

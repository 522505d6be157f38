"""`GET /v1/calls/{call_id}`: one call's usage row, for the token that made it.

The call id is the `x-litellm-call-id` header of every answer (`call.CALL_ID_HEADER`). The
row says what the call used and cost — model, tokens by kind, the credits debited, how it
ended, when — and nothing else (the table holds no content). Only the token that made the
call can read it: another token's call (the same user's included) and an unknown id get
the same 404, body and all, from the same single read, so the route tells nobody whether
an id exists. A call still running, or settled into the spool while the database was
down, is 404 until its row is written.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway_plugins.auth import identify, presented_token
from gateway_plugins.errors import ErrorBody, error_response, from_domain, service_unavailable
from gateway_plugins.runtime import GatewayRuntime
from portal.credits.units import format_units
from portal.errors import GatewayError
from portal.usage.models import UsageRecord
from portal.usage.service import call_of_token

__all__ = ["call_card", "read_call"]

log = logging.getLogger(__name__)

_MAX_CALL_ID = 64  # usage_records.call_id's width: a longer id names no call
_NO_SUCH_CALL = ErrorBody(
    404,
    "No call with this id was made with this token.",
    type="invalid_request_error",
    code="call_not_found",
)


async def read_call(runtime: GatewayRuntime, http: Request) -> Response:
    call_id: str = http.path_params["call_id"]
    try:
        identity = await identify(runtime, presented_token(http.headers))
        record = None
        if len(call_id) <= _MAX_CALL_ID:
            async with runtime.postgres.call(), runtime.database.session() as session:
                record = await call_of_token(session, call_id, identity.token_id)
    except GatewayError as refused:
        return error_response(from_domain(refused))
    except Exception as exc:  # the database past its deadline, or its breaker open
        log.error("call read failed: %s", type(exc).__name__)
        return error_response(service_unavailable("The call's record"))
    if record is None:
        return error_response(_NO_SUCH_CALL)
    return Response(orjson.dumps(call_card(record)), media_type="application/json")


def call_card(record: UsageRecord) -> dict[str, Any]:
    """The row as the API shows it: usage named as in the answers (`cost`, `cost_units`)."""
    return {
        "object": "call",
        "id": record.call_id,
        "model": record.model,
        "status": str(record.status),
        "http_status": record.http_status,
        "error_type": record.error_type,
        "usage": {
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.prompt_tokens + record.completion_tokens,
            "cached_tokens": record.cached_tokens,
            "reasoning_tokens": record.reasoning_tokens,
            "cost": format_units(record.credits),
            "cost_units": record.credits,
        },
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat(),
    }

"""No content anywhere: unique canary strings sent in every place a request or a reply
can carry text (system prompt, user message, tool definition, tool-call argument, tool
result, the upstream's reply), on every model, plain and streamed, answered and failed,
never appear in the database (every row of every table, pg_dump, raw SQLite files) or in
anything the gateway wrote (its logs at the default level and at debug, its spool)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import openai
import pytest

from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.dumps import database_dump, files_dump
from tests.gateway.support import gateway_config, settled_usage

pytestmark = pytest.mark.gateway

PLACES = (
    "system",
    "user",
    "earlier_user",
    "tool_description",
    "tool_parameter",
    "tool_argument",
    "tool_result",
    "reply",
)


def new_canaries() -> dict[str, str]:
    return {place: f"CANARY{uuid.uuid4().hex.upper()}" for place in PLACES}


def canary_request(canary: dict[str, str]) -> dict[str, Any]:
    """A chat request with a canary in every field that can carry content."""
    arguments = json.dumps({"query": f"find {canary['tool_argument']}"})
    return {
        "messages": [
            {"role": "system", "content": f"You are careful. {canary['system']}"},
            {"role": "user", "content": f"Look up {canary['earlier_user']} for me"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_canary1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_canary1", "content": canary["tool_result"]},
            {"role": "user", "content": f"Now summarise {canary['user']} please"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": f"Looks a thing up. {canary['tool_description']}",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": canary["tool_parameter"]}
                        },
                        "required": ["query"],
                    },
                },
            }
        ],
        "max_tokens": 50,
    }


async def answered(client: openai.AsyncOpenAI, model: str, body: dict, *, stream: bool) -> str:
    if not stream:
        completion = await client.chat.completions.create(model=model, **body)
        return completion.choices[0].message.content or ""
    chunks = await client.chat.completions.create(model=model, stream=True, **body)
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


def leaks(canary: dict[str, str], text: str) -> list[str]:
    return [place for place, value in canary.items() if value in text]


async def send_canaries_everywhere(
    gateway: RunningGateway, db: Database, make_user: MakeUser, upstream: FakeUpstream
) -> dict[str, str]:
    """Every model, plain and streamed, answered and failed, with canaries everywhere;
    returns the canaries once every call has settled."""
    canary = new_canaries()
    body = canary_request(canary)
    user = await make_user("10")
    client = gateway.async_client(user.token)
    models = gateway_config().model_names  # the debug gateway's unpriced one is refused

    for model in models:
        for stream in (False, True):
            upstream.reply_text = f"Here is the summary: {canary['reply']} done"
            assert canary["reply"] in await answered(client, model, body, stream=stream)
            sent = json.dumps(upstream.requests[-1]["body"])
            # The upstream did get the content: the canaries are really on the wire.
            assert not {"system", "user", "tool_argument"} - set(leaks(canary, sent)), model

            upstream.fail_next(400, count=3)  # and the fallbacks' attempts
            with pytest.raises(openai.APIStatusError) as failed:
                await answered(client, model, body, stream=stream)
            assert 400 <= failed.value.status_code < 600
            upstream.reset()

    records = await settled_usage(db, user.user_id, 4 * len(models))
    statuses = sorted(r.status for r in records)
    assert statuses == sorted([CallStatus.SUCCESS, CallStatus.FAILED] * (2 * len(models)))
    return canary


def assert_nothing_kept(canary: dict[str, str], gateway: RunningGateway, dump: str) -> None:
    assert leaks(canary, dump) == []
    assert leaks(canary, gateway.logs()) == []
    assert leaks(canary, files_dump([gateway.log_path.parent])) == []  # logs, spool, var/


async def test_no_canary_reaches_the_database_or_the_logs(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    canary = await send_canaries_everywhere(gateway, db, make_user, fresh_upstream)
    assert_nothing_kept(canary, gateway, await database_dump(gateway.database_url))


async def test_no_canary_in_the_logs_at_debug_level(
    debug_gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    canary = await send_canaries_everywhere(debug_gateway, db, make_user, fresh_upstream)
    assert_nothing_kept(canary, debug_gateway, await database_dump(debug_gateway.database_url))
    # Debug logging really was on and said a lot, so its silence about content counts.
    logs = debug_gateway.logs()
    assert re.search(r"\bdebug\b", logs, re.IGNORECASE) and len(logs) > 20_000

"""A stream ends honestly whatever the transport did (issue 19, point 7): an upstream that
closes its connection cleanly after two chunks of a close-delimited body (no finish
reason, no usage, no `[DONE]` / `message_stop` / `response.completed`), or drops it there,
reaches the client
as the API's error event, never as a made-up finish, and the call is settled for what was
delivered. Every streaming endpoint on a model of each of the four providers (answered
natively or translated by LiteLLM).

Once part of the stream reached the client, nothing takes it over: the upstream received
one request (no retry, no fallback). Before:
- chat on Gemini reached the client as `finish_reason: "stop"` + `[DONE]`: LiteLLM's
  Gemini stream parser gives every chunk a finish reason (litellm_bridge/gemini_finish.py);
- `/v1/responses` on Claude (fallback: gpt-4o-mini) was continued by the Router on the
  fallback after its first words reached the client: a second `response.created`, the
  content sent to a second provider (litellm_bridge/stream_recovery.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.support import settled_usage

pytestmark = [
    pytest.mark.gateway,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

TEXT = "Tell me a story"
MESSAGES = {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 50}
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": MESSAGES,
    "/v1/completions": {"prompt": TEXT, "max_tokens": 50},
    "/v1/messages": MESSAGES,
    "/v1/responses": {"input": TEXT, "max_output_tokens": 50},
}
# The end markers a client must not get, per endpoint.
OPENAI_ENDS = [b'"finish_reason"', b"[DONE]"]
MARKERS = {
    "/v1/chat/completions": OPENAI_ENDS,
    "/v1/completions": OPENAI_ENDS,
    "/v1/messages": [b"message_stop", b'"stop_reason":"end_turn"'],
    "/v1/responses": [b"response.completed"],
}
MODELS = {  # one per provider; claude-haiku-4-5 falls back to gpt-4o-mini (config.yaml)
    "openai": "gpt-4.1-nano",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
    "openrouter": "openrouter-gpt-4o-mini",
}


@pytest.mark.parametrize("fault", ["end", "cut"])
@pytest.mark.parametrize("provider", sorted(MODELS))
@pytest.mark.parametrize("path", sorted(BODIES))
async def test_a_stream_the_upstream_ends_without_its_end_marker_is_an_error(
    path: str,
    provider: str,
    fault: str,
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    fresh_upstream.reply_text = "once upon a time there was a gateway"
    if fault == "end":  # the body ends cleanly
        fresh_upstream.end_stream_after(2)
    else:  # the connection is dropped
        fresh_upstream.cut_stream_after(2)
    user = await make_user("1")
    model = MODELS[provider]

    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
        answer = await http.post(
            path,
            json={"model": model, "stream": True, **BODIES[path]},
            headers={"authorization": f"Bearer {user.token}"},
        )

    assert answer.status_code == 200
    text = answer.content
    assert b"once" in text  # what the upstream sent was relayed
    assert b"gateway" not in text  # the rest never came
    for marker in MARKERS[path]:
        assert marker not in text, (marker, text[-600:])
    # The API's own error event: OpenAI-style `error` data, Anthropic/Responses `event: error`.
    assert b"upstream_stream_cut" in text or b"event: error" in text, text[-600:]
    # One upstream request: no retry or fallback took the stream over after its start.
    assert [r["provider"] for r in fresh_upstream.requests] == [provider]
    (record,) = await settled_usage(db, user.user_id, 1)
    assert record.status == CallStatus.INCOMPLETE
    assert record.credits > 0  # what was delivered is billed

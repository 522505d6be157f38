"""Every call the upstream worked on is billed, by the rule in docs/security.md
("Billing when a call does not end normally") — issue 19, points 3 and 4. A real gateway
process in front of the wire-format fake upstream.

- a stream the client leaves whose upstream then breaks off without a usage report is
  billed the counted prompt plus the text the upstream sent, by the model's own
  tokenizer (main billed characters ÷ 4: a quarter of CJK output);
- a Responses stream that ends in `response.incomplete` settles from the usage that
  event reports (main billed it as a cut stream, by characters);
- a request without an output cap is sent upstream with the cap the reservation covers
  (`default_max_tokens`), never left to the provider's maximum.

The client-leaves, first-byte and deadline cases are in test_faults_e2e.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import litellm
import pytest

from gateway_plugins import litellm_bridge
from portal.db import Database
from portal.usage.models import CallStatus
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway, eventually
from tests.gateway.support import (
    expected_units,
    fake_prompt_tokens,
    gateway_config,
    money,
    settled_usage,
    stream_request,
    streamed_response,
)

pytestmark = pytest.mark.gateway

PROMPT = "Tell me a long story"
FUNDING = 10**9
# ~1 token per character with OpenAI's tokenizers, so characters ÷ 4 bills a quarter.
CJK_WORDS = [f"長い物語の第{i}章です" for i in range(40)]


async def read_pieces_then_leave(gateway: RunningGateway, token: str, api: str) -> None:
    """Open a raw stream, read until two text deltas arrived, close the connection."""
    body = stream_request(api, "gpt-4.1-nano", PROMPT)
    async with streamed_response(gateway, token, api, body) as response:
        assert response.status_code == 200
        seen = 0
        async for line in response.aiter_lines():
            seen += ('"content":"' in line) or ("output_text.delta" in line)
            if seen >= 2:
                break


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_a_stream_left_then_cut_without_usage_is_billed_by_the_models_tokenizer(
    api: str,
    gateway: RunningGateway,
    db: Database,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    fresh_upstream.reply_text = " ".join(CJK_WORDS)
    fresh_upstream.chunk_delay = 0.02
    fresh_upstream.cut_stream_after(3)  # no finish, no usage report
    user = await make_user("1")

    await read_pieces_then_leave(gateway, user.token, api)

    await eventually(lambda: fresh_upstream.streams_open == 0, seconds=60, what="cut")
    # A ceiling above abandoned_read_seconds (30): once, in 1 run of 4, the call settled
    # late, as if the read-on timer rather than the cut had ended it (see the report).
    (record,) = await settled_usage(db, user.user_id, 1, wait_seconds=90)
    sent = "".join(f"{word} " for word in CJK_WORDS[:3])  # read on to the cut
    output = int(litellm.token_counter(model="gpt-4.1-nano", text=sent))
    params: dict[str, Any] = (
        {"input": PROMPT}
        if api == "responses"
        else {"messages": [{"role": "user", "content": PROMPT}]}
    )
    prompt = litellm_bridge.count_prompt_tokens(api, params)
    assert output > -(-len(sent) // 4)  # what main billed
    # Whether the gateway saw the client leave or the cut first, the bill is the same.
    assert record.status == CallStatus.INCOMPLETE
    assert record.error_type in ("client_gone", "upstream_stream_cut"), record.error_type
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, output), record
    assert record.credits == expected_units("gpt-4.1-nano", prompt, output) > 0
    state = await money(db, user.user_id)
    assert (state.reserved, FUNDING - state.balance) == (0, record.credits)


async def test_a_responses_stream_ending_incomplete_settles_from_its_reported_usage(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.reply_text = " ".join(f"word{i}" for i in range(60))
    user = await make_user("1")
    cap = 20  # the fake stops at 20 output tokens: response.incomplete, usage reported

    body = stream_request("responses", "gpt-4.1-nano", PROMPT, max_tokens=cap)
    async with streamed_response(gateway, user.token, "responses", body) as response:
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])

    last = raw.strip().split(b"\n\n")[-1]
    assert last.startswith(b"event: response.incomplete"), raw[-300:]
    assert b"event: error" not in raw
    (record,) = await settled_usage(db, user.user_id, 1)
    prompt = fake_prompt_tokens(PROMPT)
    assert (record.prompt_tokens, record.completion_tokens) == (prompt, cap), record
    assert record.credits == expected_units("gpt-4.1-nano", prompt, cap)
    assert (await money(db, user.user_id)).reserved == 0


@pytest.mark.parametrize(
    ("path", "model", "field"),
    [
        ("/v1/chat/completions", "claude-haiku-4-5", "max_tokens"),
        ("/v1/chat/completions", "gpt-4o-mini", "max_tokens"),
        ("/v1/chat/completions", "gemini-2.5-flash", "generationConfig.max_output_tokens"),
        ("/v1/responses", "gpt-4.1-nano", "max_output_tokens"),
    ],
)
async def test_a_request_without_an_output_cap_is_sent_upstream_with_the_reserved_one(
    path: str,
    model: str,
    field: str,
    gateway: RunningGateway,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    user = await make_user("1")
    body: dict[str, Any] = {"model": model}
    if path.endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": PROMPT}]
    else:
        body["input"] = PROMPT

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        answer = await client.post(
            path, json=body, headers={"Authorization": f"Bearer {user.token}"}
        )

    assert answer.status_code == 200, answer.text
    body_sent = fresh_upstream.requests[-1]["body"]
    sent: Any = body_sent
    for key in field.split("."):
        sent = sent.get(key) if isinstance(sent, dict) else None
    # Anthropic via chat got the provider's maximum (64,000) on main, the others none.
    assert sent == gateway_config().plugin.credits.default_max_tokens, body_sent


async def test_a_small_balance_reserves_for_the_primary_and_goes_without_fallback(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """Issue 19.4: a 0.01-credit user was refused (402) a gpt-4o-mini call costing
    0.000042 because the hold was priced at its Claude fallback × 4,096; now the hold is
    the primary's and the call goes without fallback."""
    user = await make_user("0.01")
    headers = {"Authorization": f"Bearer {user.token}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        answered = await client.post("/v1/chat/completions", json=body, headers=headers)
        fresh_upstream.fail_next(500, "upstream trouble", count=10)
        failed = await client.post("/v1/chat/completions", json=body, headers=headers)

    assert answered.status_code == 200, answered.text
    assert failed.status_code >= 500
    # Neither call reached the fallback's provider, and nothing LiteLLM-internal leaked.
    assert {r["provider"] for r in fresh_upstream.requests} == {"openai"}
    assert all("disable_fallbacks" not in r["body"] for r in fresh_upstream.requests)
    await settled_usage(db, user.user_id, 2)


async def test_the_402_names_the_balance_the_amount_needed_and_what_to_do(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("0.000001")
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": PROMPT}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        refused = await client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {user.token}"}
        )

    assert refused.status_code == 402, refused.text
    message = refused.json()["error"]["message"]
    assert "Your balance is 0.000001 credits" in message, message
    assert "this request needs " in message and "Lower max_tokens" in message, message
    assert "ask the operator" in message  # the test gateway runs without Stripe
    assert fresh_upstream.requests == []

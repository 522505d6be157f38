"""One user cannot move another (issue 19, point 5).

- A request's own 400 (invalid, too long for the context window) is answered as that 400
  by the deployment that refused it: no fallback, so no second provider ever receives the
  content (config.yaml: gpt-4o-mini falls back to claude-haiku-4-5). Before, LiteLLM's
  Router sent the request on to the fallback's provider.
- Streams whose reply repeats one chunk (LiteLLM's repeated-chunk guard used to end them
  as an InternalServerError, a deployment failure) are relayed to their end, and never
  cool the deployment down: another user's calls right after are all answered by the
  model's own deployment. Before, after 13 such streams another user's calls went to the
  Anthropic fallback at 7.6x the price.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway

# Fallbacks and cooldowns are the Router's state, not the database's: one backend is enough.
pytestmark = [
    pytest.mark.gateway,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

MODEL = "gpt-4o-mini"  # falls back to claude-haiku-4-5 (config.yaml)
TEXT = "please summarise this confidential memo"
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 20},
    "/v1/messages": {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 20},
    "/v1/responses": {"input": TEXT, "max_output_tokens": 20},
}
OWN_400S = {
    "invalid": "Invalid value for 'messages': the request is malformed",
    "context_window": "This model's maximum context length is 128000 tokens. "
    "(context_length_exceeded)",
}


def providers(upstream: FakeUpstream) -> list[str]:
    return [str(request["provider"]) for request in upstream.requests]


async def post(gateway: RunningGateway, token: str, path: str, **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
        return await http.post(
            path,
            json={"model": MODEL, **BODIES[path], **extra},
            headers={"authorization": f"Bearer {token}"},
        )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("error", sorted(OWN_400S))
@pytest.mark.parametrize("path", sorted(BODIES))
async def test_a_requests_own_400_is_answered_as_is_and_reaches_no_second_provider(
    path: str,
    error: str,
    stream: bool,
    gateway: RunningGateway,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    a, b = await make_user("1"), await make_user("1")
    # Every attempt is refused: had the Router tried the fallback, it would be refused too.
    fresh_upstream.fail_next(400, OWN_400S[error], count=20)

    answer = await post(gateway, a.token, path, stream=stream)

    assert answer.status_code == 400, answer.text
    assert providers(fresh_upstream) == ["openai"]  # the content went nowhere else
    fresh_upstream.reset()
    assert (await post(gateway, b.token, path)).status_code == 200
    assert providers(fresh_upstream) == ["openai"]  # the model's own deployment answered B


LOOPING_STREAMS = 13  # as measured in issue 19
OTHER_USERS_CALLS = 28
REPEATS = 150  # one chunk, over LiteLLM's repeated-chunk limit (100)


async def test_streams_that_repeat_a_chunk_never_move_another_users_calls(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    a, b = await make_user("1"), await make_user("1")
    fresh_upstream.reply_text = "again " * REPEATS  # the fake sends one word per chunk
    path = "/v1/chat/completions"

    for _ in range(LOOPING_STREAMS):
        answer = await post(gateway, a.token, path, stream=True, max_tokens=400)
        assert answer.status_code == 200
        assert answer.text.count('"again ') == REPEATS  # relayed whole, not cut as an error
        assert '"finish_reason":"stop"' in answer.text and answer.text.endswith("[DONE]\n\n")
    assert set(providers(fresh_upstream)) == {"openai"}
    assert len(providers(fresh_upstream)) == LOOPING_STREAMS  # nothing retried elsewhere

    fresh_upstream.reset()
    for _ in range(OTHER_USERS_CALLS):
        assert (await post(gateway, b.token, path)).status_code == 200
    assert providers(fresh_upstream) == ["openai"] * OTHER_USERS_CALLS

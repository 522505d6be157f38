"""No user's call carries a cookie an upstream set on another user's call.

The gateway's upstream HTTP clients are shared by every user's calls. api.openai.com
answers through Cloudflare, which sets `__cf_bm` on responses; a client that kept such a
cookie would send it with every later call, whoever makes it. LiteLLM's own HTTP clients
block cookies, but the clients it builds for the OpenAI SDK (chat, embeddings) kept and
replayed them (seen before the gateway's fix: the second user's chat call arrived with
the first user's `__cf_bm`).

Every POST route (the same cases as `test_endpoints_e2e`) plus chat on Gemini and
OpenRouter: the fake upstream sets a cookie on every response; user A calls, then user B;
no upstream request may carry a `Cookie` header.
"""

from __future__ import annotations

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway
from tests.gateway.test_endpoints_e2e import CASES, PROMPT, Case, Run

# The upstream clients are the gateway's, whatever its database: one backend is enough.
pytestmark = [
    pytest.mark.gateway,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

COOKIE = "__cf_bm=set-on-user-a-call; Path=/; HttpOnly"


def chat_on(model: str) -> Run:
    async def run(gateway: RunningGateway, token: str) -> str:
        answer = await gateway.async_client(token).chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=50
        )
        return answer.choices[0].message.content or ""

    return run


ALL = [
    *CASES,
    Case("chat-gemini", "gemini-2.5-flash", chat_on("gemini-2.5-flash"), 0),
    Case("chat-openrouter", "openrouter-gpt-4o-mini", chat_on("openrouter-gpt-4o-mini"), 0),
]


@pytest.mark.parametrize("case", ALL, ids=[case.name for case in ALL])
async def test_an_upstream_cookie_never_rides_on_another_call(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream, case: Case
) -> None:
    fresh_upstream.set_cookie = COOKIE
    for user in (await make_user("1"), await make_user("1")):
        for _ in range(2):
            assert await case.run(gateway, user.token)

    calls = [request for request in fresh_upstream.requests if request["body"]]
    assert len(calls) == 4
    assert [request["cookie"] for request in calls] == [None] * 4

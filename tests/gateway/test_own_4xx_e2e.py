"""A request's own 413 or 422 moves no one (issue 19, points 5 and 7).

An upstream 413 (too large) or 422 (unprocessable) answers the request that caused it,
whatever the endpoint and whether it streams: the gateway never sends the request on to
the fallback deployment (config.yaml: gpt-4o-mini falls back to claude-haiku-4-5, so the
content would reach a second provider), never cools the deployment down for the next
user, and relays the status with a fixed text, never the upstream's own words (which can
quote the operator's key or upstream URL). Before, a 413 or 422 was sent on to the
Anthropic fallback.

Counted on the wire-format fakes: every request each provider's fake received.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway_plugins.litellm_bridge import UpstreamFailure
from gateway_plugins.upstream import failure_body
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
    "/v1/completions": {"prompt": TEXT, "max_tokens": 20},
    "/v1/messages": {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 20},
    "/v1/responses": {"input": TEXT, "max_output_tokens": 20},
}
# What an upstream's own error text may carry; none of it may reach the client.
LEAKY = "Bearer sk-operator-4e1b9 rejected by https://internal.example/deploy-7"
# LiteLLM's defaults (config.yaml's router_settings leave them): more than 3 failures
# within 5 s cool a deployment down, so this many refusals in a row would.
BURST = 4


def providers(upstream: FakeUpstream) -> list[str]:
    return [str(request["provider"]) for request in upstream.requests]


async def post(http: httpx.AsyncClient, token: str, path: str, **extra: Any) -> httpx.Response:
    return await http.post(
        path,
        json={"model": MODEL, **BODIES[path], **extra},
        headers={"authorization": f"Bearer {token}"},
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("status", [413, 422])
@pytest.mark.parametrize("path", sorted(BODIES))
async def test_a_requests_own_413_or_422_reaches_no_second_provider_and_cools_nothing(
    path: str,
    status: int,
    stream: bool,
    gateway: RunningGateway,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
) -> None:
    a, b = await make_user("1"), await make_user("1")
    # Every attempt is refused: had the Router tried the fallback, it would be refused too.
    fresh_upstream.fail_next(status, LEAKY, count=100)
    fixed = failure_body(UpstreamFailure(status, "", "")).message

    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
        for _ in range(BURST):
            answer = await post(http, a.token, path, stream=stream)
            assert answer.status_code == status, answer.text
            assert fixed in answer.text  # the fixed text for the status...
            for secret in ("sk-operator", "internal.example", "deploy-7"):
                assert secret not in answer.text  # ...never the upstream's words
        # One request upstream per call: no retry, and the content went nowhere else.
        assert providers(fresh_upstream) == ["openai"] * BURST
        fresh_upstream.reset()

        # The deployment was not cooled down: another user is answered by it at once.
        assert (await post(http, b.token, path)).status_code == 200
    assert providers(fresh_upstream) == ["openai"]

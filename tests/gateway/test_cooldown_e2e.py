"""Users can't hurt each other (issue 8, point 5): an upstream 4xx caused by one user's
request (400, 404, 413, 422) never puts a deployment into cooldown, so another user's
ordinary call on the same model right after is answered by that same deployment. Only
429, 5xx and timeouts may count toward cooldown, as config.yaml says: `router_settings`
sets no `allowed_fails` / `cooldown_time` (LiteLLM's defaults: more than 3 failures within
5 s), and every model group has one deployment, which LiteLLM never cools down for errors
the policy does not name, unless the group has a fallback: a burst of 429s or 500s (more
than 3 within 5 s) cools gpt-4o-mini (fallback: claude-haiku-4-5) down for 5 s, so calls
go to the fallback, and never cools gpt-4.1-nano (no fallback) down.

Before the gateway set `allowed_fails_policy`, one upstream 404 put the deployment into
cooldown for everyone: the next user got 429 "No deployments available" for ~5 s.
"""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import Closing, MakeUser, RunningGateway, eventually

# Cooldown is the Router's state, not the database's: one backend is enough.
pytestmark = [
    pytest.mark.gateway,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

LONE = "gpt-4.1-nano"  # one deployment, no fallback
WITH_FALLBACK = "gpt-4o-mini"  # falls back to claude-haiku-4-5 (config.yaml)
MESSAGES = [{"role": "user", "content": "hello there"}]
# LiteLLM's defaults, which config.yaml's router_settings leave in place: a deployment
# that fails more than 3 times within 5 s is cooled down for 5 s.
ALLOWED_FAILS, COOLDOWN_SECONDS = 3, 5
BURST = ALLOWED_FAILS + 1  # concurrent calls whose first attempt fails


async def ask(client: openai.AsyncOpenAI, model: str) -> int:
    """HTTP status of one ordinary chat call."""
    try:
        await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=20)
    except openai.APIStatusError as error:
        return error.status_code
    return 200


def providers(upstream: FakeUpstream) -> list[str]:
    return [str(request["provider"]) for request in upstream.requests]


@pytest.mark.parametrize("model", [LONE, WITH_FALLBACK])
@pytest.mark.parametrize("status", [400, 404, 413, 422])
async def test_one_users_bad_request_never_cools_the_model_down_for_another(
    status: int,
    model: str,
    gateway: RunningGateway,
    make_user: MakeUser,
    fresh_upstream: FakeUpstream,
    closing: Closing,
) -> None:
    a, b = await make_user("1"), await make_user("1")
    client_a, client_b = (
        closing(gateway.async_client(a.token)),
        closing(gateway.async_client(b.token)),
    )
    # Every attempt A's call makes (retries, the fallback's) is refused by the upstream.
    fresh_upstream.fail_next(status, "the upstream refuses this request", count=20)

    # A gets the upstream's status (a 422 too: chat goes through LiteLLM's own HTTP
    # handler; on the OpenAI SDK's path it became a 502, litellm_bridge/openai_chat.py).
    assert await ask(client_a, model) == status
    assert providers(fresh_upstream)[0] == "openai"  # the upstream itself refused A
    fresh_upstream.reset()  # the upstream is healthy again

    assert await ask(client_b, model) == 200
    assert providers(fresh_upstream) == ["openai"]  # the same deployment answered B


async def test_an_upstream_burst_cools_down_only_a_model_with_a_fallback_as_configured(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream, closing: Closing
) -> None:
    a, b = await make_user("1"), await make_user("1")
    client_a, client_b = (
        closing(gateway.async_client(a.token)),
        closing(gateway.async_client(b.token)),
    )

    # A lone deployment is never cooled down: A's concurrent calls all meet an upstream
    # 429 (more than the allowed failures at once), their retries and B's call are served
    # by that same deployment.
    fresh_upstream.fail_next(429, count=BURST)
    assert await asyncio.gather(*(ask(client_a, LONE) for _ in range(BURST))) == [200] * BURST
    assert providers(fresh_upstream) == ["openai"] * 2 * BURST
    fresh_upstream.reset()
    assert await ask(client_b, LONE) == 200
    assert providers(fresh_upstream) == ["openai"]
    fresh_upstream.reset()

    # A model with a fallback: the same burst (upstream 500s) cools its deployment down,
    # so A's retries and then B's call are answered by the fallback (claude-haiku-4-5).
    fresh_upstream.fail_next(500, count=BURST)
    calls = (ask(client_a, WITH_FALLBACK) for _ in range(BURST))
    assert await asyncio.gather(*calls) == [200] * BURST
    # (Fewer than BURST may reach it: earlier failures within 5 s count too.)
    seen = providers(fresh_upstream)
    assert seen[0] == "openai" and seen.count("openai") <= BURST and "anthropic" in seen
    fresh_upstream.reset()
    cooled = time.monotonic()
    assert await ask(client_b, WITH_FALLBACK) == 200
    assert providers(fresh_upstream) == ["anthropic"]

    # The cooldown lasts as configured (LiteLLM's default, 5 s); then the model's own
    # deployment answers again.
    async def own_deployment_answers() -> bool:
        fresh_upstream.reset()
        answered = await ask(client_b, WITH_FALLBACK) == 200
        return answered and providers(fresh_upstream) == ["openai"]

    await eventually(own_deployment_answers, seconds=60, what="cooldown over", interval=0.25)
    assert time.monotonic() - cooled < COOLDOWN_SECONDS + 10

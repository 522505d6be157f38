"""clients.py: what the gateway closes at shutdown is every aiohttp session its calls
opened (the Router's own clients and LiteLLM's)."""

from __future__ import annotations

from gateway_plugins import litellm_bridge
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES, open_sessions, router_on


async def test_closing_the_upstream_clients_leaves_no_session_open(upstream: FakeUpstream) -> None:
    with router_on(upstream) as router:
        before = open_sessions()
        for model in ("gpt-4.1-nano", "claude-haiku-4-5"):
            await router.acompletion(model=model, messages=MESSAGES, max_tokens=9)
            stream = await router.acompletion(
                model=model, messages=MESSAGES, max_tokens=9, stream=True
            )
            async for _ in stream:
                pass
        opened = open_sessions() - before
        assert opened, "the calls opened no aiohttp session: this test no longer tests anything"
        await litellm_bridge.close_upstream_clients(router)
        assert not (open_sessions() & opened)

"""cookies.py: LiteLLM's factory for the OpenAI SDK's httpx clients keeps cookies (the
defect: a cookie one user's answer set was sent with everyone's later calls); through the
bridge, its clients store none, LiteLLM's own clients still send none by their own
policy, and real calls still build their SDK clients through the factory the bridge
wraps. End to end, every
route: tests/gateway/test_upstream_cookies_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router, cookies
from tests.fakes.upstream import FakeUpstream


async def _cookies_sent(client: Any) -> list[str | None]:
    """The Cookie header of two requests on `client`, to a server that sets one."""
    import httpx

    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "__cf_bm=a; Path=/"}, json={})

    client._transport = httpx.MockTransport(answer)
    for _ in range(2):
        await client.get("http://upstream.test/v1/models")
    await client.aclose()
    return sent


async def test_the_upstream_clients_litellm_builds_keep_no_cookie() -> None:
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler
    from litellm.llms.openai.common_utils import BaseOpenAILLM

    cookies.keep_no_upstream_cookies()
    litellm_alone = await _cookies_sent(cookies._build_openai_http_client())
    assert litellm_alone == [None, "__cf_bm=a"]  # the defect is still LiteLLM's
    assert await _cookies_sent(BaseOpenAILLM._get_async_http_client()) == [None, None]
    assert await _cookies_sent(AsyncHTTPHandler().client) == [None, None]  # LiteLLM's policy


async def test_real_calls_build_their_sdk_clients_through_the_wrapped_factory(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """Embeddings (the OpenAI SDK's path), with no client cached yet, build one through
    the factory the bridge wraps."""
    built: list[str] = []

    def counted(name: str, original: Any) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            built.append(name)
            return original(*args, **kwargs)

        return build

    await litellm_bridge.close_upstream_clients(router)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            cookies, "_build_openai_http_client", counted("sdk", cookies._build_openai_http_client)
        )
        await router.aembedding(model="gpt-4.1-nano", input="hello")
    assert built == ["sdk"], built

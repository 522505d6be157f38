"""stream_recovery.py: the Router's stream wrapper hands a stream that broke after part of
it reached the caller to the fallback (a `/v1/responses` stream on Claude is continued on
gpt-4o-mini: the caller gets a second `response.created`, the content a second
provider); through the bridge, once the caller marked the stream delivered
(`stream_delivered`), the wrapper raises the provider's error instead. End to end, every
endpoint and provider: tests/gateway/test_stream_end_marker_e2e.py."""

from __future__ import annotations

import asyncio

from gateway_plugins.litellm_bridge import Router, stream_delivered, stream_recovery
from tests.fakes.upstream import FakeUpstream


async def _claude_responses_stream(router: Router, *, mark: bool) -> tuple[list[str], bool]:
    """Event types of a Claude `/v1/responses` stream, and whether it raised; `mark`: the
    caller marks it delivered at its first event, as the gateway's relay does. In a task
    of its own, so the mark stays with this call."""

    async def read() -> tuple[list[str], bool]:
        stream = await router.aresponses(
            model="claude-haiku-4-5", input="pin this", max_output_tokens=50, stream=True
        )
        kinds: list[str] = []
        try:
            async for event in stream:
                if mark and not kinds:
                    stream_delivered()
                kind = getattr(event, "type", "")
                kinds.append(str(getattr(kind, "value", kind)))  # some are a str Enum
        except Exception:
            return kinds, True
        return kinds, False

    return await asyncio.create_task(read())


def _providers(upstream: FakeUpstream) -> list[str]:
    return [str(request["provider"]) for request in upstream.requests]


async def test_a_delivered_stream_that_breaks_raises_and_reaches_no_fallback(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    stream_recovery.keep_delivered_streams_on_their_deployment()
    fresh_upstream.reply_text = "once upon a time there was a gateway"
    fresh_upstream.end_stream_after(2)
    kinds, raised = await _claude_responses_stream(router, mark=True)
    assert raised
    assert kinds.count("response.created") == 1
    assert _providers(fresh_upstream) == ["anthropic"]


async def test_without_the_mark_litellm_still_continues_it_on_the_fallback(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """Still needed, and the patched methods are the ones LiteLLM's wrapper calls."""
    stream_recovery.keep_delivered_streams_on_their_deployment()
    fresh_upstream.reply_text = "once upon a time there was a gateway"
    fresh_upstream.end_stream_after(2)
    kinds, raised = await _claude_responses_stream(router, mark=False)
    assert not raised
    assert kinds.count("response.created") == 2  # the caller got the start twice
    assert _providers(fresh_upstream) == ["anthropic", "openai"]


def test_the_router_never_continues_a_chat_stream_elsewhere(router: Router) -> None:
    assert router.enable_mid_stream_fallback_continuation is False

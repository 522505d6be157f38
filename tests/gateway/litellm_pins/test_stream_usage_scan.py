"""stream_usage_scan.py: at a stream's end LiteLLM rebuilds the answer from its chunks and
looks for the usage report in each (`ChunkProcessor.extract_usage_chunk`); through the
bridge a chunk without usage is answered without the probes. Same answer for every chunk
of every provider's stream, the same rebuilt answer, and the patched method is the one
the rebuild calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router, stream_usage_scan
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES, router_on

GROUPS = ["gpt-4.1-nano", "claude-haiku-4-5", "gemini-2.5-flash", "openrouter-gpt-4o-mini"]


@pytest.fixture(scope="module")
async def router(upstream: FakeUpstream) -> AsyncIterator[Router]:
    with router_on(upstream) as router:
        yield router
        await litellm_bridge.close_upstream_clients(router)


async def _built_from(
    router: Router, monkeypatch: pytest.MonkeyPatch, group: str, usage: bool
) -> tuple[list[Any], dict[str, Any]]:
    """The chunks LiteLLM rebuilt the answer from at the stream's end, and its arguments."""
    import litellm

    kept: dict[str, Any] = {}
    build = litellm.stream_chunk_builder

    def spied(*args: Any, **kwargs: Any) -> Any:
        kept.setdefault("kwargs", dict(kwargs))
        return build(*args, **kwargs)

    monkeypatch.setattr(litellm, "stream_chunk_builder", spied)
    options = {"stream_options": {"include_usage": True}} if usage else {}
    stream = await router.acompletion(
        model=group, messages=MESSAGES, max_tokens=200, stream=True, **options
    )
    delivered = [chunk async for chunk in stream]
    monkeypatch.setattr(litellm, "stream_chunk_builder", build)
    assert delivered and "kwargs" in kept
    return list(kept["kwargs"]["chunks"]), kept["kwargs"]


def _dumped(answer: Any) -> Any:
    dump = answer.model_dump()
    for key in ("id", "created"):
        dump.pop(key, None)
    return dump, answer.usage, answer._hidden_params


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage-asked"])
@pytest.mark.parametrize("group", GROUPS)
async def test_every_chunk_and_the_rebuilt_answer_are_as_litellm_has_them(
    router: Router,
    fresh_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    group: str,
    usage: bool,
) -> None:
    import litellm
    from litellm.litellm_core_utils.streaming_chunk_builder_utils import ChunkProcessor

    assert stream_usage_scan._readable_directly()
    fresh_upstream.reply_text = " ".join(f"word{i}" for i in range(40))
    chunks, kwargs = await _built_from(router, monkeypatch, group, usage)
    litellms = [stream_usage_scan._extract(chunk) for chunk in chunks]
    assert [stream_usage_scan._extract_directly(chunk) for chunk in chunks] == litellms
    assert any(found is not None for found in litellms)  # the upstream's report, found

    monkeypatch.setattr(
        ChunkProcessor, "extract_usage_chunk", staticmethod(stream_usage_scan._extract)
    )
    before = _dumped(litellm.stream_chunk_builder(**kwargs))
    stream_usage_scan.find_stream_usage_directly()
    assert ChunkProcessor.extract_usage_chunk is stream_usage_scan._extract_directly
    assert _dumped(litellm.stream_chunk_builder(**kwargs)) == before


async def test_the_patched_method_is_what_the_rebuild_calls(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.litellm_core_utils.streaming_chunk_builder_utils import ChunkProcessor

    stream_usage_scan.find_stream_usage_directly()
    asked: list[Any] = []

    def counted(chunk: Any) -> Any:
        asked.append(found := stream_usage_scan._extract_directly(chunk))
        return found

    monkeypatch.setattr(ChunkProcessor, "extract_usage_chunk", staticmethod(counted))
    fresh_upstream.reply_text = "one two three four five six"
    stream = await router.acompletion(
        model="gpt-4.1-nano",
        messages=MESSAGES,
        max_tokens=200,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert any(found is not None for found in asked) and asked.count(None) >= 6

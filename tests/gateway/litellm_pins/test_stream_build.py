"""stream_build.py: LiteLLM builds the whole answer at a stream's end
(`stream_chunk_builder`, through `streaming_handler.asyncify`) for the usage it sends
last, and again for its logging: twice, LiteLLM alone. Through the bridge it is built
once, a short stream's in the loop's thread, a long one's in a worker thread, and the
stream ends with the upstream's usage either way."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from gateway_plugins.litellm_bridge import Router, stream_build
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import chat_stream_with_usage

SHORT, LONG = 5, stream_build.INLINE_CHUNK_BUILD_MAX_CHUNKS + 5


@pytest.mark.parametrize(
    ("words", "bridged", "builds", "in_the_loops_thread"),
    [(SHORT, True, 1, True), (LONG, True, 1, False), (SHORT, False, 2, False)],
    ids=["short", "long", "litellm-alone"],
)
async def test_a_stream_is_built_once_and_a_short_one_in_the_loops_thread(
    router: Router,
    fresh_upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    words: int,
    bridged: bool,
    builds: int,
    in_the_loops_thread: bool,
) -> None:
    import litellm
    from litellm.litellm_core_utils import streaming_handler

    stream_build.build_each_stream_once()
    if not bridged:
        monkeypatch.setattr(streaming_handler, "asyncify", stream_build._in_a_thread)
    built_in: list[int] = []
    build = litellm.stream_chunk_builder

    def recorded(*args: Any, **kwargs: Any) -> Any:
        built_in.append(threading.get_ident())
        return build(*args, **kwargs)

    monkeypatch.setattr(litellm, "stream_chunk_builder", recorded)
    fresh_upstream.reply_text = " ".join(["word"] * words)
    _, chunks = await chat_stream_with_usage(router, "gpt-4.1-nano")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == words
    assert len(built_in) == builds
    assert (built_in[0] == threading.get_ident()) is in_the_loops_thread

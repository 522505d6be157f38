"""Patch: each stream's answer built once, a short one in the loop's thread.

At the end of every chat/text stream LiteLLM rebuilds the whole answer from its chunks
(`litellm.stream_chunk_builder`, ~33 µs of CPU per chunk) for the usage it sends last, in
a worker thread (`streaming_handler.asyncify`, anyio), and, when the client asked for
usage, builds it twice from the same chunks (once for the usage chunk, once for its
logging). The second ask gets the first build (remembered on the call's `Logging`
object); a short stream's build (at most `INLINE_CHUNK_BUILD_MAX_CHUNKS` chunks, ~1 ms)
runs in the loop's thread, a longer one keeps the thread. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

from typing import Any

import litellm
from litellm.litellm_core_utils import streaming_handler

__all__ = ["INLINE_CHUNK_BUILD_MAX_CHUNKS", "build_each_stream_once"]

INLINE_CHUNK_BUILD_MAX_CHUNKS = 32
_in_a_thread = streaming_handler.asyncify  # type: ignore[attr-defined]
_LAST_BUILD = "_wfg_last_stream_build"  # on LiteLLM's per-call Logging object


def _stream_builds_once(function: Any, **options: Any) -> Any:
    """`asyncify` as LiteLLM's stream handler uses it, except for `stream_chunk_builder`."""
    threaded = _in_a_thread(function, **options)
    if function is not litellm.stream_chunk_builder:
        return threaded

    async def build(*args: Any, **kwargs: Any) -> Any:
        chunks, call = kwargs.get("chunks") or [], kwargs.get("logging_obj")
        last = getattr(call, _LAST_BUILD, None)
        if last is not None and last[0] is chunks and last[1] == len(chunks):
            return last[2]
        if len(chunks) > INLINE_CHUNK_BUILD_MAX_CHUNKS:
            built = await threaded(*args, **kwargs)
        else:
            built = function(*args, **kwargs)
        if call is not None:
            setattr(call, _LAST_BUILD, (chunks, len(chunks), built))
        return built

    return build


def build_each_stream_once() -> None:
    streaming_handler.asyncify = _stream_builds_once  # type: ignore[attr-defined]

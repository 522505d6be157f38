"""Patch: the end-of-stream rebuild finds the usage reports without asking every chunk.

At the end of a chat/text stream LiteLLM rebuilds the answer from every chunk it kept
(`stream_chunk_builder`, see `stream_build`) and looks for the upstream's usage report in
each chunk three times over (`ChunkProcessor.extract_usage_chunk`: the usage sum and two
pricing fields). Each look is three attribute probes; on a chunk without usage — all but
one or two of a stream's — each probe misses, which pydantic answers by raising and
catching `AttributeError`: ~60% of the rebuild, which is ~15–20% of a long stream's CPU.
A `ModelResponseStream` whose fields, pydantic extras and hidden params hold no `usage`
is answered `None` (what LiteLLM answers for it) without the probes; any other chunk goes
the original way. Figures: bench/RESULTS.md ("Long streams").
"""

from __future__ import annotations

from typing import Any

from litellm.litellm_core_utils.streaming_chunk_builder_utils import ChunkProcessor
from litellm.types.utils import ModelResponseStream

__all__ = ["find_stream_usage_directly"]

_extract = ChunkProcessor.__dict__["extract_usage_chunk"].__func__
_HIDDEN = "_hidden_params"


def _without_usage(chunk: ModelResponseStream) -> bool:
    """No `usage` attribute, and hidden params (a dict, LiteLLM's own) without one."""
    if "usage" in chunk.__dict__:
        return False
    extra = chunk.__pydantic_extra__
    if extra is not None and "usage" in extra:
        return False
    private = chunk.__pydantic_private__
    if private is None or _HIDDEN not in private:
        return False
    hidden = private[_HIDDEN]
    return type(hidden) is dict and hidden.get("usage") is None


def _extract_directly(chunk: Any) -> Any:
    if type(chunk) is ModelResponseStream and _without_usage(chunk):
        return None
    return _extract(chunk)


def _readable_directly() -> bool:
    """`usage` is no class attribute or property of a stream chunk, and the hidden params
    live where `ModelResponseStream.hidden_params` reads them."""
    if hasattr(ModelResponseStream, "usage"):
        return False
    if _HIDDEN not in ModelResponseStream.__private_attributes__:
        return False
    probe = ModelResponseStream()
    return probe.hidden_params is (probe.__pydantic_private__ or {}).get(_HIDDEN)


def find_stream_usage_directly() -> None:
    if _readable_directly():
        ChunkProcessor.extract_usage_chunk = staticmethod(_extract_directly)  # type: ignore[method-assign]

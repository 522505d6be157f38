"""Patch: a stream's continuation bookkeeping reads each chunk's delta directly.

For every chat/text chunk LiteLLM's stream (`CustomStreamWrapper._accumulate_streamed_delta`)
appends the delta's text to `response_uptil_now` and asks whether the delta carries
anything a text-only continuation could not resend (`_delta_disqualifies_continuation`:
tool calls, reasoning, audio, …). It asks through `Delta.get`, nine attribute reads a
chunk, eight of them misses that pydantic answers by raising and catching
`AttributeError`: ~7% of a long stream's CPU per chunk. The bookkeeping itself stays —
it is what LiteLLM's Router reads when a stream breaks (`MidStreamFallbackError`'s
`generated_content` and `emitted_disqualifying_content`: whether the stream had output,
which decides a Responses stream's fallback and a context-window error's class) — but a
`Delta` is read as `getattr(delta, name, None)` reads it: the instance's fields, then its
pydantic extras, else nothing. Anything but a `Delta` goes the original way. Figures:
bench/RESULTS.md ("Long streams").
"""

from __future__ import annotations

from typing import Any

from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
from litellm.types.utils import Delta

__all__ = ["read_deltas_directly"]

_accumulate = CustomStreamWrapper._accumulate_streamed_delta
_DISQUALIFYING: tuple[str, ...] = tuple(
    CustomStreamWrapper._CONTINUATION_DISQUALIFYING_DELTA_FIELDS
)
_READ = ("content", *_DISQUALIFYING)


def _readable_directly() -> bool:
    """`getattr(delta, name)` reaches the instance for every name read (none is a class
    attribute, a property or a declared private attribute of `Delta`), and `Delta.get`
    is still plain `getattr` with a default."""
    private = getattr(Delta, "__private_attributes__", {}) or {}
    if any(hasattr(Delta, name) or name in private for name in _READ):
        return False
    probe = Delta(content="x", reasoning_content="r")
    get: Any = probe.get
    return bool(
        get("content") == probe.content == "x"
        and get("reasoning_content") == "r"
        and get("tool_calls") is None
        and get("no_such_field") is None
    )


def _value(fields: dict[str, Any], extra: dict[str, Any] | None, name: str) -> Any:
    if name in fields:
        return fields[name]
    return extra.get(name) if extra else None


def _accumulate_directly(self: CustomStreamWrapper, delta: object) -> None:
    if type(delta) is not Delta:
        _accumulate(self, delta)
        return
    fields: dict[str, Any] = delta.__dict__
    extra = delta.__pydantic_extra__
    content = _value(fields, extra, "content")
    if isinstance(content, str) and content:
        self.response_uptil_now += content
    if not self._emitted_disqualifying_content:
        for name in _DISQUALIFYING:
            if _value(fields, extra, name):
                self._emitted_disqualifying_content = True
                break


def read_deltas_directly() -> None:
    if _readable_directly():
        CustomStreamWrapper._accumulate_streamed_delta = _accumulate_directly  # type: ignore[method-assign]

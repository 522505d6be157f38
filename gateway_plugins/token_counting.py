"""Token counts the gateway makes itself, off the event loop.

- `output_tokens`: what a call that ended without the upstream's usage report is billed
  for on the output side — the text the upstream sent (delivered, and read on after the
  client left; reasoning and tool arguments included), counted with the answering model's
  own tokenizer as LiteLLM selects it (`litellm.token_counter(model=…)`), never
  characters ÷ 4 (`litellm_bridge.count_output_tokens`). CJK text runs ~1 token per
  character, where ÷ 4 billed a quarter.
- `prompt_tokens`: the prompt, counted in full — its size checked first
  (`limits.max_input_characters`, `limits.max_messages`; 400 beyond), because LiteLLM's
  counter samples text over 4,000,000 characters — and, above `INLINE_COUNT_CHARACTERS`,
  in a worker thread, so an 8 MB prompt does not stall other users' calls on the loop
  (a small prompt is counted inline: a thread hop would cost more than the count).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gateway_plugins import litellm_bridge
from gateway_plugins.validation import InvalidRequest
from portal.config.plugin_settings import LimitSettings

__all__ = ["INLINE_COUNT_CHARACTERS", "output_tokens", "prompt_tokens"]

log = logging.getLogger(__name__)

INLINE_COUNT_CHARACTERS = 20_000  # ~0.5 ms of tiktoken; larger prompts go to a thread
_INPUT_FIELDS = ("messages", "system", "tools", "prompt", "input", "instructions")


async def output_tokens(model: str, pieces: Sequence[str]) -> int:
    """Tokens of the output text `pieces` with `model`'s tokenizer, counted in a thread."""
    if not pieces:
        return 0
    return await asyncio.to_thread(litellm_bridge.count_output_tokens, model, "".join(pieces))


def _characters(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_characters(item) for item in value.values())
    if isinstance(value, list):
        return sum(_characters(item) for item in value)
    return 0


def input_size(kind: str, params: Mapping[str, Any], limits: LimitSettings) -> int:
    """Characters of text the request carries; InvalidRequest (400) beyond the caps."""
    for field in ("messages", "input", "prompt"):
        items = params.get(field)
        if isinstance(items, list) and len(items) > limits.max_messages:
            raise InvalidRequest(
                f"At most {limits.max_messages} items in {field!r} per request.", field
            )
    size = sum(_characters(params.get(field)) for field in _INPUT_FIELDS)
    if size > limits.max_input_characters:
        raise InvalidRequest(
            f"The request carries {size} characters of text; at most "
            f"{limits.max_input_characters} are accepted per request.",
            "messages" if "messages" in params else "input",
        )
    return size


async def prompt_tokens(kind: str, params: Mapping[str, Any], limits: LimitSettings) -> int:
    """The prompt's tokens (`litellm_bridge.count_prompt_tokens`), after the size caps;
    counted in a thread when the prompt is large."""
    if input_size(kind, params, limits) <= INLINE_COUNT_CHARACTERS:
        return litellm_bridge.count_prompt_tokens(kind, params)
    return await asyncio.to_thread(litellm_bridge.count_prompt_tokens, kind, params)

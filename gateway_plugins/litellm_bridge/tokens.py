"""Token counts before a call, with LiteLLM's tokenizer and its model map.

Relied on: `litellm.token_counter(messages=, tools=)` / `(text=)` / `(model=, text=)`, and
`litellm.utils.huggingface_tokenizer_kind` to tell which tokenizers ship with it (tiktoken; an
approximation for other providers' tokenizers, hence the configured safety factor) and
`litellm.get_model_info(model=)["max_output_tokens"]` (and `["max_input_tokens"]`, the context
length `/v1/models` shows).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import litellm
import orjson

__all__ = [
    "count_output_tokens",
    "count_prompt_tokens",
    "input_limits",
    "output_limits",
    "tokenizer_model",
]

log = logging.getLogger(__name__)


def count_prompt_tokens(kind: str, params: Mapping[str, Any]) -> int:
    """Input tokens of a request with LiteLLM's tokenizer. Odd shapes fall back to a
    generous size estimate (a third of the JSON length)."""
    try:
        if kind in ("chat", "messages"):
            messages = list(params["messages"])
            system = params.get("system")
            if system is not None:
                messages.insert(0, {"role": "system", "content": _text_of(system)})
            return int(litellm.token_counter(messages=messages, tools=params.get("tools")))
        text = params.get("input", params.get("prompt"))
        if isinstance(text, str):
            return int(litellm.token_counter(text=text))
    except Exception as exc:
        log.debug("token count fell back to a size estimate (%s)", type(exc).__name__)
    return len(orjson.dumps(params, default=str)) // 3 + 1


# `huggingface_tokenizer_kind` values whose tokenizer ships with LiteLLM. For Cohere and
# Llama names `token_counter` would download one from huggingface.co at the first call
# (the gateway fetches nothing on a caller's behalf): those are counted with tiktoken.
_LOCAL_TOKENIZERS = (None, "anthropic")


def tokenizer_model(model: str) -> str:
    """The model name to hand `token_counter`: the model itself when its tokenizer is
    local, "" (tiktoken's default) when LiteLLM would download one."""
    bare = model.split("/", 1)[-1] if "/" in model else model
    try:
        kind = litellm.utils.huggingface_tokenizer_kind(bare)
    except Exception:  # an older or newer LiteLLM without it: tiktoken
        return ""
    return bare if kind in _LOCAL_TOKENIZERS else ""


def count_output_tokens(model: str, text: str) -> int:
    """Tokens of output text with the answering model's own tokenizer (what a call that
    ended without the upstream's usage report is billed for); never 0 for text sent."""
    if not text:
        return 0
    try:
        return int(litellm.token_counter(model=tokenizer_model(model), text=text))
    except Exception as exc:  # one token per character
        log.warning("output token count fell back to characters (%s)", type(exc).__name__)
        return len(text)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    return " ".join(str(block.get("text", "")) for block in value if isinstance(block, dict))


def output_limits(model_list: list[dict[str, Any]]) -> dict[str, int]:
    """Model group → the smallest `max_output_tokens` among its deployments, from
    model_info or LiteLLM's cost map (groups with no known limit are absent)."""
    return _smallest_limits(model_list, ("max_output_tokens", "max_tokens"))


def input_limits(model_list: list[dict[str, Any]]) -> dict[str, int]:
    """Model group → the smallest `max_input_tokens` (context length) among its
    deployments, from model_info or LiteLLM's cost map (unknown: absent)."""
    return _smallest_limits(model_list, ("max_input_tokens",))


def _smallest_limits(model_list: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for entry in model_list:
        info = entry.get("model_info") or {}
        limit = next((info[key] for key in keys if info.get(key)), None)
        if limit is None:
            try:
                known: Mapping[str, Any] = litellm.get_model_info(
                    model=entry["litellm_params"]["model"]
                )
                limit = next((known[key] for key in keys if known.get(key)), None)
            except Exception:  # not in the cost map
                limit = None
        if isinstance(limit, int) and limit > 0:
            name = entry["model_name"]
            limits[name] = min(limits.get(name, limit), limit)
    return limits

"""tokens.py: LiteLLM's tokenizer counts a prompt, and its model map knows output limits."""

from __future__ import annotations

import orjson

from gateway_plugins import litellm_bridge
from tests.gateway.litellm_pins.support import deployment


def test_a_prompt_is_counted_by_the_tokenizer_not_estimated() -> None:
    """Counted, not the size estimate the bridge falls back to; a system prompt and a
    longer text count more."""
    params = {"messages": [{"role": "user", "content": "hello there, how are you today?"}]}
    counted = litellm_bridge.count_prompt_tokens("chat", params)
    estimate = len(orjson.dumps(params)) // 3 + 1
    assert 5 <= counted < estimate
    with_system = litellm_bridge.count_prompt_tokens(
        "messages", {**params, "system": [{"type": "text", "text": "be brief and kind"}]}
    )
    assert with_system > counted
    text = litellm_bridge.count_prompt_tokens("text", {"prompt": "one two three four"})
    assert 4 <= text <= 6


def test_output_limits_come_from_model_info_or_litellms_map() -> None:
    limits = litellm_bridge.output_limits(
        [
            deployment("mapped"),
            {**deployment("configured"), "model_info": {"max_output_tokens": 123}},
            {"model_name": "unknown", "litellm_params": {"model": "openai/no-such-model-x"}},
        ]
    )
    assert limits["configured"] == 123
    assert limits["mapped"] >= 16_000  # gpt-4.1-nano's, from LiteLLM's map
    assert "unknown" not in limits


def test_context_lengths_come_from_model_info_or_litellms_map() -> None:
    limits = litellm_bridge.input_limits(
        [
            deployment("mapped"),
            {**deployment("configured"), "model_info": {"max_input_tokens": 4096}},
            {**deployment("pool"), "model_info": {"max_input_tokens": 9000}},
            deployment("pool"),
            {"model_name": "unknown", "litellm_params": {"model": "openai/no-such-model-x"}},
        ]
    )
    assert limits["mapped"] == 1_047_576  # gpt-4.1-nano's, from LiteLLM's map
    assert limits["configured"] == 4096
    assert limits["pool"] == 9000  # the smallest of the group's deployments
    assert "unknown" not in limits

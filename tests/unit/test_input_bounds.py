"""Images are reserved at the stated ceiling of every provider the call may reach
(`gateway_plugins.input_bounds`), wherever the image sits in the request: chat parts,
Anthropic blocks and tool results, Responses input items. End to end, with the money:
tests/gateway/test_overspend_endpoints_e2e.py."""

from __future__ import annotations

from gateway_plugins.input_bounds import image_parts, reserved_image_tokens
from portal.config.plugin_settings import DEFAULT_IMAGE_TOKENS, CreditSettings

URL = "https://images.example.com/a.png"


def test_every_image_part_is_counted_wherever_it_sits() -> None:
    chat = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "two images"},
        {"type": "image_url", "image_url": {"url": URL, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}  # fmt: skip
    claude = {"system": "s", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": URL}},
        {"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "url", "url": URL}}]}]}]}  # fmt: skip
    responses = {"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "one"},
        {"type": "input_image", "image_url": URL}]}]}  # fmt: skip
    assert (image_parts(chat), image_parts(claude), image_parts(responses)) == (2, 2, 1)
    assert image_parts({"messages": [{"role": "user", "content": "no image"}]}) == 0


def test_the_ceiling_is_the_largest_of_the_providers_reached_unless_the_group_names_its_own() -> (
    None
):
    credits = CreditSettings(image_tokens={"gpt-4.1-nano": 3779})
    assert credits.image_tokens["anthropic"] == DEFAULT_IMAGE_TOKENS["anthropic"]  # kept
    one = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": URL}]}]}
    assert reserved_image_tokens(one, credits, "claude", {"anthropic"}) == 1600
    assert reserved_image_tokens(one, credits, "claude", {"anthropic", "openai"}) == 48_169
    assert reserved_image_tokens(one, credits, "gpt-4.1-nano", {"openai"}) == 3779
    assert reserved_image_tokens(one, credits, "other", {"unknown-provider"}) == 48_169
    assert reserved_image_tokens({"input": "text"}, credits, "claude", {"anthropic"}) == 0


def test_an_image_sent_at_low_detail_is_reserved_at_the_low_detail_ceiling() -> None:
    """OpenAI bills a `detail: "low"` image a fixed amount; a provider that ignores the
    detail (Anthropic), or a group with its own entry (a patch-based model), keeps its
    full ceiling; `auto` and `high` keep the full one."""
    credits = CreditSettings(image_tokens={"gpt-4.1-nano": 3779})
    low_chat = {"type": "image_url", "image_url": {"url": URL, "detail": "low"}}
    auto_chat = {"type": "image_url", "image_url": {"url": URL, "detail": "auto"}}
    low_responses = {"type": "input_image", "image_url": URL, "detail": "low"}

    def chat(*parts: object) -> dict[str, object]:
        return {"messages": [{"role": "user", "content": list(parts)}]}

    assert reserved_image_tokens(chat(low_chat), credits, "gpt-4o-mini", {"openai"}) == 2833
    assert reserved_image_tokens(chat(auto_chat), credits, "gpt-4o-mini", {"openai"}) == 48_169
    assert (
        reserved_image_tokens(
            chat(low_chat, auto_chat, low_chat), credits, "gpt-4o-mini", {"openai"}
        )
        == 2 * 2833 + 48_169
    )
    responses = {"input": [{"role": "user", "content": [low_responses]}]}
    assert reserved_image_tokens(responses, credits, "gpt-4o-mini", {"openai"}) == 2833
    # A fallback that bills more for it, whatever the detail: its ceiling.
    assert reserved_image_tokens(chat(low_chat), credits, "x", {"openai", "gemini"}) == 4128
    assert reserved_image_tokens(chat(low_chat), credits, "x", {"anthropic"}) == 1600
    assert reserved_image_tokens(chat(low_chat), credits, "gpt-4.1-nano", {"openai"}) == 3779
    own = CreditSettings(low_detail_image_tokens={"gpt-4o": 85})
    assert reserved_image_tokens(chat(low_chat), own, "gpt-4o", {"openai"}) == 85
    assert own.low_detail_image_tokens["openai"] == 2833  # defaults kept

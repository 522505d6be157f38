"""Keeps prompt, message, tool-argument and completion text out of everything we do not
send back to the client: logging payloads (before any other callback sees them) and log
records (LiteLLM's own included, at every level).

Layers, outermost first:
1. `turn_off_message_logging: true` in config.yaml (LiteLLM redacts messages/response);
2. `ContentScrubber.async_logging_hook` drops every content-bearing key from the
   logging kwargs, `proxy_server_request` and exception text included, before any
   success callback runs (it is listed first in `litellm_settings.callbacks`);
3. `log_scrubbing.install_log_scrubbing()` wraps the log-record factory: records from LiteLLM's
   loggers (and any logger not known to be content-free) keep their level and source
   location but not their text (LiteLLM quotes upstream errors, which often quote the
   prompt), and exceptions anywhere keep their traceback frames but lose their message.
"""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger

__all__ = ["ContentScrubber", "content_scrubber", "scrub_call_details"]

REDACTED = "[redacted]"
# Keys of LiteLLM's logging kwargs / payload that can hold request or response content.
_CONTENT_KEYS = frozenset(
    {
        "messages", "input", "prompt", "system", "tools", "functions", "tool_choice",
        "response", "original_response", "complete_input_dict", "additional_args",
        "api_call_start_time_messages", "proxy_server_request", "exception",
        "error_str", "error_information", "traceback_exception", "raw_request_body",
        "raw_request_headers", "response_obj", "llm_api_duration_ms_body", "text",
        "contents", "instructions", "guardrail_information", "requester_metadata",
        "requester_custom_headers", "spend_logs_metadata", "prompt_management_metadata",
        "litellm_logging_obj_response", "async_complete_streaming_response",
        "complete_streaming_response", "stream_response",
    }
)  # fmt: skip


def scrub_call_details(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` with every content-bearing key replaced by a marker."""
    if _depth > 6:
        return value
    if isinstance(value, dict):
        return {
            key: REDACTED if key in _CONTENT_KEYS else scrub_call_details(item, _depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_call_details(item, _depth + 1) for item in value]
    return value


class ContentScrubber(CustomLogger):
    """Runs LiteLLM's logging hook first, so later callbacks see only metadata."""

    def logging_hook(self, kwargs: dict, result: Any, call_type: str) -> tuple[dict, Any]:
        return _scrub_in_place(kwargs), result

    async def async_logging_hook(
        self, kwargs: dict, result: Any, call_type: str
    ) -> tuple[dict, Any]:
        return _scrub_in_place(kwargs), result


def _scrub_in_place(kwargs: dict) -> dict:
    # The same dict object is shared with LiteLLM's logging object; keep identity for
    # keys it needs (litellm_call_id, standard_logging_object's counters and cost).
    for key in list(kwargs):
        if key in _CONTENT_KEYS:
            kwargs[key] = REDACTED
        elif key in ("litellm_params", "standard_logging_object", "metadata", "model_call_details"):
            kwargs[key] = scrub_call_details(kwargs[key])
    return kwargs


content_scrubber = ContentScrubber()

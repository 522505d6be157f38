"""Patch: LiteLLM's success logging, skipped.

`Logging.async_success_handler` / `success_handler` build, redact and hand a logging
payload to callbacks after every answer; the gateway has none (the config check refuses
them) and meters calls itself, so they are no-ops, and `claim_async_success_log` (asked
after a plain call whether to schedule the handler) says no. Prompt text never enters
that payload. With `allowed_fails_policy` set, the Router's cooldown counts failures
only, so no success count is lost; failure handlers are kept. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

from typing import Any

from litellm.litellm_core_utils.litellm_logging import Logging as CallLogging

__all__ = ["skip_success_logging"]


async def _no_async_success_log(self: CallLogging, *args: Any, **kwargs: Any) -> None:
    return None


def _no_success_log(self: CallLogging, *args: Any, **kwargs: Any) -> None:
    return None


def _never_schedule(self: CallLogging) -> bool:
    return False


def skip_success_logging() -> None:
    CallLogging.async_success_handler = _no_async_success_log  # type: ignore[method-assign]
    CallLogging.success_handler = _no_success_log  # type: ignore[method-assign]
    CallLogging.claim_async_success_log = _never_schedule  # type: ignore[method-assign]

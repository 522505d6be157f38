"""Patch: the Router core's per-call bookkeeping for features the gateway leaves off, skipped.

Three steps of LiteLLM's Router core (`router_rust`) do work on every call whose only use
is a feature that is off in the gateway, and find that out only at their end:

- `repin_after_success` (after each answer) looks the deployment up and builds a pydantic
  `Deployment` of it, then hands over to `repin_session_after_success`, whose first line
  returns unless `session_affinity_repin_on_failover` is on (a Router setting the gateway
  does not use). Here it returns at once while that setting is off, read on each call, so
  a Router built with it on re-pins as before.
- `service_logged` (twice per call: the pick and the call) schedules a task that builds a
  `ServiceLoggerPayload` and hands it to each of `litellm.service_callback`, a list the
  gateway keeps empty (no callbacks: the config check refuses them). Here no task is
  scheduled while that list is empty, read on each call.
- `_usage_read_scope` (twice per call: the pick and the attempt) reads the model group's
  deployments, then uses them only when the group routes by usage
  (`usage-based-routing-v2`, whose counters it reads with the cooldowns). Here the
  strategy is asked first, and LiteLLM's own step runs for such a group.

Nothing a caller sees depends on any of them: answers, retries, fallbacks, cooldowns and the
Router's counters go the same way. Figures: bench/RESULTS.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import litellm
from litellm.router_rust.core import RustCore
from litellm.router_rust.surface.health import RustHealthCallbacks
from litellm.router_strategy.lowest_tpm_rpm_v2 import LowestTPMLoggingHandler_v2

__all__ = ["skip_unused_router_bookkeeping"]

_REPIN = "repin_after_success"
_SERVICE_LOG = "service_logged"
_USAGE_SCOPE = "_usage_read_scope"


def _repin_is_off(core: Any) -> bool:
    checks = core.__dict__.get("_checks")
    return checks is not None and not getattr(checks, "session_affinity_repin_on_failover", True)


def _repin_only_when_on(original: Any) -> Any:
    async def repin_after_success(
        self: Any, kwargs: Mapping[str, object], completion_response: object
    ) -> None:
        if _repin_is_off(self):
            return
        await original(self, kwargs, completion_response)

    repin_after_success.wfg_original = original  # type: ignore[attr-defined]
    return repin_after_success


def _service_log_only_with_callbacks(original: Any) -> Any:
    def service_logged(
        self: Any, call_type: str, start_time: float, end_time: float, request: Mapping[str, object]
    ) -> None:
        if not litellm.service_callback:
            return
        original(self, call_type, start_time, end_time, request)

    service_logged.wfg_original = original  # type: ignore[attr-defined]
    return service_logged


def _usage_read_only_for_usage_routing(original: Any) -> Any:
    @contextlib.contextmanager
    def _usage_read_scope(self: Any, model: str, request: Mapping[str, object]) -> Iterator[None]:
        try:
            selector = self._prefetch_usage_selector(model, request)
        except Exception:  # as LiteLLM's step: the batched read is an optimisation
            selector = None
        if not isinstance(selector, LowestTPMLoggingHandler_v2):
            yield  # what LiteLLM's step does for any other strategy, deployments or not
            return
        with original(self, model, request):
            yield

    _usage_read_scope.wfg_original = original  # type: ignore[attr-defined]
    return _usage_read_scope


def skip_unused_router_bookkeeping() -> None:
    for owner, name, wrap in (
        (RustHealthCallbacks, _REPIN, _repin_only_when_on),
        (RustCore, _SERVICE_LOG, _service_log_only_with_callbacks),
        (RustCore, _USAGE_SCOPE, _usage_read_only_for_usage_routing),
    ):
        current = owner.__dict__[name]
        if not hasattr(current, "wfg_original"):
            setattr(owner, name, wrap(current))

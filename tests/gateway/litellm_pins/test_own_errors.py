"""own_errors.py: the Router's core falls back on an upstream 413 or 422 (the content goes
to a second provider) and may cool the deployment down for it; through the bridge it
treats them as the request's own 400: one upstream request, the caller gets the status.
End to end, every endpoint: tests/gateway/test_own_4xx_e2e.py."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from gateway_plugins.litellm_bridge import Router, own_errors, upstream_failure
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES

MODEL = "gpt-4o-mini"  # falls back to claude-haiku-4-5 (config.yaml)
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("acompletion", {"messages": MESSAGES, "max_tokens": 10}),
    "responses": ("aresponses", {"input": "pin this", "max_output_tokens": 10}),
}


async def _refused(router: Router, upstream: FakeUpstream, status: int, api: str) -> int:
    """The status the caller gets for a call every upstream attempt refuses."""
    upstream.fail_next(status, "refused", count=20)
    method, params = CALLS[api]
    with pytest.raises(Exception) as raised:
        await getattr(router, method)(model=MODEL, **params)
    return upstream_failure(raised.value).status


def _providers(upstream: FakeUpstream) -> list[str]:
    return [str(request["provider"]) for request in upstream.requests]


@pytest.mark.parametrize("api", sorted(CALLS))
@pytest.mark.parametrize("status", sorted(own_errors.OWN_ERROR_STATUSES))
async def test_an_upstream_413_or_422_reaches_no_fallback(
    router: Router, fresh_upstream: FakeUpstream, status: int, api: str
) -> None:
    own_errors.treat_own_errors_as_400()
    assert await _refused(router, fresh_upstream, status, api) == status
    assert _providers(fresh_upstream) == ["openai"]


async def test_the_routers_core_alone_still_falls_back_on_a_413(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Still needed, and `attempt_failure` is still what the core's readers call."""
    from litellm.router_rust import core

    monkeypatch.setattr(core, "attempt_failure", own_errors._attempt_failure)
    await _refused(router, fresh_upstream, 413, "chat")
    assert _providers(fresh_upstream) == ["openai", "anthropic"]


def test_no_litellm_module_keeps_its_own_reference_to_the_failure_document() -> None:
    """Every reader imports `attempt_failure` from `router_rust.core` when it runs: a
    module-level import elsewhere would keep LiteLLM's own function past the patch."""
    original = own_errors._attempt_failure
    holders = [
        name
        for name, module in list(sys.modules.items())
        if name.startswith("litellm.")
        and name != "litellm.router_rust.core"
        and getattr(module, "attempt_failure", None) is original
    ]
    assert holders == []

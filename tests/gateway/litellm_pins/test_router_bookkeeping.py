"""router_bookkeeping.py: a plain call still reaches the two Router-core steps the bridge
short-cuts (so short-cutting them keeps saving the work), each still does nothing with
the gateway's settings, and each runs as before once its feature is on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import litellm
import pytest
from litellm.router_rust import core as core_module
from litellm.router_rust.core import RustCore
from litellm.router_rust.steps import callbacks as router_callbacks
from litellm.router_rust.surface.health import RustHealthCallbacks

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import eventually
from tests.gateway.litellm_pins.support import MESSAGES, router_on


def _originals() -> tuple[Any, Any]:
    repin = RustHealthCallbacks.__dict__["repin_after_success"]
    logged = RustCore.__dict__["service_logged"]
    assert hasattr(repin, "wfg_original") and hasattr(logged, "wfg_original")  # installed
    return repin.wfg_original, logged.wfg_original


def _core(router: Router) -> Any:
    core = router._core  # type: ignore[attr-defined]
    assert isinstance(core, RustCore)
    return core


async def test_a_plain_call_reaches_both_steps_and_they_do_nothing_here(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    repin, logged = _originals()
    repinned: list[Any] = []
    service_logs: list[str] = []
    checked: list[bool] = []
    real_check = router_callbacks.OptionalChecks.repin_session_after_success

    async def repin_counting(self: Any, kwargs: Mapping[str, object], response: object) -> None:
        repinned.append(response)
        await repin(self, kwargs, response)

    def logged_counting(self: Any, call_type: str, *args: Any) -> None:
        service_logs.append(call_type)
        logged(self, call_type, *args)

    async def check_counting(self: Any, *args: Any) -> None:
        checked.append(bool(self.session_affinity_repin_on_failover))
        await real_check(self, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RustHealthCallbacks, "repin_after_success", repin_counting)
        patch.setattr(RustCore, "service_logged", logged_counting)
        patch.setattr(
            router_callbacks.OptionalChecks, "repin_session_after_success", check_counting
        )
        answer = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
    assert answer.choices[0].message.content
    # Fail if LiteLLM stops calling these per call (then the patch saves nothing: drop it)
    assert len(repinned) == 1
    assert "acompletion" in service_logs
    # ... or if the re-pin starts doing something with re-pinning off, or the service
    # log with no service callback (then skipping them would change behaviour).
    assert checked == [False]
    assert litellm.service_callback == []


async def test_the_short_cuts_leave_a_feature_that_is_on_to_litellm(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    core = _core(router)
    checks = core.__dict__["_checks"]
    reached: list[str] = []

    async def repin(self: Any, *args: Any) -> None:
        reached.append("repin")

    async def service_hook(self: Any, **kwargs: Any) -> None:
        reached.append(str(kwargs.get("call_type")))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(router_callbacks.OptionalChecks, "repin_session_after_success", repin)
        patch.setattr(core.service_logger_obj.__class__, "async_service_success_hook", service_hook)
        await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
        assert reached == []  # both short-cut with the gateway's settings
        patch.setattr(checks, "session_affinity_repin_on_failover", True)
        patch.setattr(litellm, "service_callback", ["a service logger"])
        await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
        # the service log is a task of the loop
        await eventually(lambda: "acompletion" in reached, seconds=60, what="the service log")
    assert "repin" in reached


async def test_the_usage_read_is_left_to_litellm_for_usage_based_routing(
    fresh_upstream: FakeUpstream,
) -> None:
    """The gateway's Router (simple shuffle) calls the step, which arms nothing; a Router
    routing by usage still gets LiteLLM's own, which arms the batched usage read that the
    cooldown read then makes."""
    scope = RustCore.__dict__["_usage_read_scope"]
    assert hasattr(scope, "wfg_original")
    real_read = RustCore._stored_with_usage
    for strategy, armed in (("simple-shuffle", False), ("usage-based-routing-v2", True)):
        reads: list[bool] = []
        scopes: list[str] = []

        async def noting_read(self: Any, keys: Any, reads: list[bool] = reads) -> Any:
            reads.append(core_module._USAGE_READ.get() is not None)
            return await real_read(self, keys)

        def noting_scope(
            self: Any, model: str, request: Mapping[str, object], scopes: list[str] = scopes
        ) -> Any:
            scopes.append(model)
            return scope(self, model, request)

        with router_on(fresh_upstream, {"routing_strategy": strategy}) as router:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(RustCore, "_stored_with_usage", noting_read)
                patch.setattr(RustCore, "_usage_read_scope", noting_scope)
                answer = await router.acompletion(
                    model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9
                )
            await litellm_bridge.close_upstream_clients(router)
        assert answer.choices[0].message.content
        assert scopes  # fails if LiteLLM stops asking: then the short-cut saves nothing
        assert reads and any(reads) is armed, strategy

"""success_logging.py: LiteLLM still runs its success logging through the methods the
bridge replaces, so replacing them keeps saving the work."""

from __future__ import annotations

import pytest

from gateway_plugins.litellm_bridge import Router, success_logging
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import eventually
from tests.gateway.litellm_pins.support import MESSAGES


async def test_success_logging_is_skipped_where_litellm_calls_it(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    """After a plain call LiteLLM asks whether to schedule the handler (the bridge says
    no); a stream calls the handler itself."""
    from litellm.litellm_core_utils.litellm_logging import Logging

    assert Logging.async_success_handler is success_logging._no_async_success_log
    assert Logging.success_handler is success_logging._no_success_log
    assert Logging.claim_async_success_log is success_logging._never_schedule
    asked: list[bool] = []
    handled: list[bool] = []

    async def counting(self: Logging, *args: object, **kwargs: object) -> None:
        handled.append(True)

    def asking(self: Logging) -> bool:
        answer = success_logging._never_schedule(self)
        asked.append(answer)
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Logging, "async_success_handler", counting)
        patch.setattr(Logging, "claim_async_success_log", asking)
        await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
        assert asked == [False]  # asked once, told no
        stream = await router.acompletion(
            model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9, stream=True
        )
        _ = [chunk async for chunk in stream]
        # LiteLLM runs a stream's log as a task; fails if it no longer calls this method
        await eventually(lambda: handled, seconds=60, what="LiteLLM's stream log")

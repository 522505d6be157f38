"""model_info_memo.py: a chat call still looks the model up through the bridge check's own
`get_model_info_helper` (so remembering it keeps saving the work), and the remembered
answer routes every model as the look-up itself does."""

from __future__ import annotations

from typing import Any

import litellm
import pytest
from litellm.responses import bridge_check

from gateway_plugins.litellm_bridge import Router, model_info_memo
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import MESSAGES


def _remembered() -> model_info_memo._Remembered:
    current = bridge_check.get_model_info_helper
    assert isinstance(current, model_info_memo._Remembered)
    return current


async def test_a_chat_call_reads_the_model_through_the_remembered_look_up(
    router: Router, fresh_upstream: FakeUpstream
) -> None:
    remembered = _remembered()
    asked: list[str] = []
    looked_up: list[str] = []
    real_lookup = remembered.lookup

    def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("model", args[0] if args else None))
        return remembered(*args, **kwargs)

    def lookup(model: str, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(model)
        return real_lookup(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bridge_check, "get_model_info_helper", counting)
        patch.setattr(remembered, "lookup", lookup)
        remembered.rows.clear()
        for _ in range(2):
            answer = await router.acompletion(model="gpt-4.1-nano", messages=MESSAGES, max_tokens=9)
            assert answer.choices[0].message.content
    # Fails if LiteLLM stops asking the bridge check's own reference: then the memory
    # would save nothing and the patch should go.
    assert len(asked) >= 2 and set(asked) == {"gpt-4.1-nano"}
    assert looked_up == ["gpt-4.1-nano"]  # once per model and cost map


@pytest.mark.parametrize(("model", "mode"), [("o3-pro", "responses"), ("gpt-4.1-nano", "chat")])
def test_the_remembered_row_routes_each_model_as_the_look_up_does(model: str, mode: str) -> None:
    remembered = _remembered()
    remembered.rows.clear()
    unremembered = remembered.lookup(model, "openai")
    for _ in range(2):  # the second from memory
        info, routed = bridge_check.responses_api_bridge_check(model, "openai")
        assert routed == model
        assert info.get("mode") == mode
        assert {k: v for k, v in info.items() if k != "mode"} == {
            k: v for k, v in unremembered.items() if k != "mode"
        }
        info["mode"] = "changed by a caller"  # a caller's copy, never the remembered row
    assert remembered(model, "openai").get("mode") == unremembered.get("mode")


def test_a_changed_cost_map_is_looked_up_afresh() -> None:
    remembered = _remembered()
    looked_up: list[str] = []
    real_lookup = remembered.lookup

    def lookup(model: str, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(model)
        return real_lookup(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(remembered, "lookup", lookup)
        patch.setattr(litellm, "model_cost", dict(litellm.model_cost))  # restored after
        remembered(model="gpt-4.1-nano", custom_llm_provider="openai")
        remembered(model="gpt-4.1-nano", custom_llm_provider="openai")
        litellm.register_model({"pin-memo-model": {"litellm_provider": "openai", "mode": "chat"}})
        remembered(model="gpt-4.1-nano", custom_llm_provider="openai")
    assert looked_up == ["gpt-4.1-nano", "gpt-4.1-nano"]

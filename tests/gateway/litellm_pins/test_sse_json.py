"""sse_json.py: LiteLLM decodes each line of an OpenAI-format stream with `json.loads`
(`BaseModelResponseIterator._string_to_dict_parser`); through the bridge orjson decodes
it, to the same value, `json.loads` still deciding what orjson refuses, and the patched
parser is the one LiteLLM's stream calls."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router, sse_json
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import chat_stream_with_usage, router_on

LINES = [
    'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"h\\u00e9llo \\ud83d\\ude00"}}]}',
    'data:{"a":1.5,"b":-0.0,"c":1e-7,"d":12345678901234567890123,"e":null,"f":[true,false]}',
    'data: {"n":9223372036854775807,"u":18446744073709551615,"neg":-9223372036854775808}',
    'data: {"big":-123456789012345678901,"f":0.12345678901234567890123,"e":1.5E+300}',
    'data: {"x":NaN,"y":Infinity}',
    'data: {"dup":1,"dup":2}',
    'data: {"s":"\\ud800"}',
    "data: [DONE]",
    "data: ",
    "data: {not json",
    '{"no":"prefix"}',
    'data: "a string"',
    "data: 1e400",
    b'data: {"bytes":true}',
    b'data: {"big":12345678901234567890123}',
    'data: {"text":"\\u0000 \\n \\" \\\\ / \\/"}',
    "data: 42",
    "data: [1, 2, 3]",
    'data: {"a": {"b": {"c": []}}}   ',
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
async def router(upstream: FakeUpstream) -> AsyncIterator[Router]:
    with router_on(upstream) as router:
        yield router
        await litellm_bridge.close_upstream_clients(router)


@pytest.mark.parametrize("line", LINES)
def test_a_line_decodes_as_litellm_decodes_it(line: Any) -> None:
    litellms = sse_json._parse.__func__(line)
    ours = sse_json._decoded(line)
    assert _same(ours, litellms), (ours, litellms)


async def test_the_patched_parser_is_what_the_stream_calls(
    router: Router, fresh_upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.llms.base_llm.base_model_iterator import BaseModelResponseIterator

    sse_json.decode_sse_with_orjson()
    assert BaseModelResponseIterator._string_to_dict_parser is sse_json._decoded
    decoded: list[Any] = []

    def counted(str_line: str) -> Any:
        decoded.append(value := sse_json._decoded(str_line))
        return value

    monkeypatch.setattr(BaseModelResponseIterator, "_string_to_dict_parser", staticmethod(counted))
    fresh_upstream.reply_text = "one two three"
    _, chunks = await chat_stream_with_usage(router, "gpt-4.1-nano")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1].usage is not None
    assert any(isinstance(d, dict) and d.get("usage") for d in decoded)

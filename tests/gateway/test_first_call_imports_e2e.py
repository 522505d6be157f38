"""No first-call stall (issue 22): a freshly started gateway imports nothing after it says
it is ready, whatever its first calls are.

LiteLLM imports code on first use (the first Anthropic stream imported ~300 modules of its
proxy package, ~2 s with the event loop blocked). `gateway_plugins.warmup` imports that
code before `/readyz` answers 200; here a new gateway process makes the first call of every
kind (each endpoint plain and streamed, each provider, an upstream failure, a refusal) and
its `wfg_gateway_modules_imported_after_ready` must still read 0. On failure the
gateway's shutdown warning names the modules to add to `warmup.LAZY_MODULES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway, start_gateway, stop_gateway

pytestmark = pytest.mark.gateway

CHAT_MODELS = ["gpt-4.1-nano", "gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash",
               "openrouter-gpt-4o-mini"]  # fmt: skip
USER_TEXT = "Say hello to the gateway please"
MESSAGES = [{"role": "user", "content": USER_TEXT}]


def first_calls() -> Iterator[tuple[str, dict[str, object]]]:
    """(path, body) of the first call of every kind, plain and streamed."""
    for stream in (False, True):
        for model in CHAT_MODELS:
            yield "/v1/chat/completions", {"model": model, "messages": MESSAGES, "stream": stream}
        yield "/v1/completions", {"model": "gpt-4.1-nano", "prompt": USER_TEXT, "stream": stream}
        for model in ("claude-haiku-4-5", "gpt-4.1-nano"):
            body = {"model": model, "messages": MESSAGES, "max_tokens": 50, "stream": stream}
            yield "/v1/messages", body
            yield "/v1/responses", {"model": model, "input": USER_TEXT, "stream": stream}
    yield "/v1/embeddings", {"model": "text-embedding-3-small", "input": USER_TEXT}
    # what the official openai SDK sends by default
    body = {"model": "text-embedding-3-small", "input": [USER_TEXT], "encoding_format": "base64"}
    yield "/v1/embeddings", body
    yield "/v1/messages/count_tokens", {"model": "claude-haiku-4-5", "messages": MESSAGES}


def late_imports(gateway: RunningGateway) -> float:
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=30).text
    found = re.search(r"^wfg_gateway_modules_imported_after_ready(?:\{[^}]*\})? (\S+)$",
                      metrics, re.MULTILINE)  # fmt: skip
    assert found, "the gateway does not export wfg_gateway_modules_imported_after_ready"
    return float(found.group(1))


@pytest.mark.parametrize("order", ["listed", "reversed"])
async def test_a_fresh_gateways_first_calls_import_nothing(
    database_url: str, make_user: MakeUser, upstream: FakeUpstream, tmp_path: Path, order: str
) -> None:
    """In two orders: what one kind of call imports may already be loaded by an earlier
    kind (an embedding first loaded the OpenAI SDK's embeddings after ready)."""
    calls = list(first_calls())
    if order == "reversed":
        calls.reverse()
    user = await make_user("10")
    gateway = start_gateway(database_url=database_url, upstream=upstream, work_dir=tmp_path)
    try:
        headers = {"authorization": f"Bearer {user.token}"}
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as http:
            for path, body in calls:
                answer = await http.post(path, json=body)
                assert answer.status_code == 200, (path, body, answer.text[:300])
            upstream.fail_next(500, count=10)  # the first failed call, retries and fallback
            failed = await http.post(
                "/v1/chat/completions", json={"model": "gpt-4.1-nano", "messages": MESSAGES}
            )
            assert failed.status_code >= 500
            refused = await http.post("/v1/chat/completions", json={"model": "no-such-model"})
            assert refused.status_code in (400, 404)
        late = late_imports(gateway)
    finally:
        upstream.reset()
        stop_gateway(gateway)
    assert late == 0, gateway.logs()[-6000:]
    assert "py.warnings" not in gateway.logs()  # none of these calls makes a library warn

"""An OpenAI image sent with `detail: "low"` is reserved at what OpenAI bills for it
(issue 19, point 4), never fetched by the gateway.

OpenAI bills a low-detail image a fixed amount, whatever its size (gpt-4o-mini: 2,833
tokens; gpt-4o: 85), and up to 48,169 tokens at `detail: "high"` / `"auto"`. The gateway
reserves each image at the ceiling for its detail level (`credits.image_tokens`,
`credits.low_detail_image_tokens`), so a user holding 0.002 credits can send a
low-detail image to gpt-4o-mini (the hold is ~0.0006 credits, the fake bills the image
at 2,833 tokens and the balance never goes below zero), while the same image at
`detail: "auto"` is still refused (402): its ceiling is still the most it can bill.
Before, every OpenAI image was reserved at 48,169 tokens (~0.009 credits): 402 for both.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from portal.credits.units import credits_to_units
from portal.db import Database
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import RunningGateway, funded_user
from tests.gateway.support import money, settled_usage

# The reservation is the same on both backends: one is enough.
pytestmark = [
    pytest.mark.gateway,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

MODEL = "gpt-4o-mini"  # OpenAI's dearest image; falls back to claude-haiku-4-5
URL = "https://images.example.com/photo.png"  # fetched by the upstream, never by us
TEXT = "What is in this picture?"
BILLED_PER_IMAGE = 2833  # gpt-4o-mini, detail low (OpenAI vision guide; LiteLLM's table)
BALANCE = credits_to_units("0.002")


def body(path: str, detail: str) -> dict[str, Any]:
    if path == "/v1/responses":
        image: dict[str, Any] = {"type": "input_image", "image_url": URL, "detail": detail}
        content = [{"type": "input_text", "text": TEXT}, image]
        return {"input": [{"role": "user", "content": content}], "max_output_tokens": 20}
    part = {"type": "image_url", "image_url": {"url": URL, "detail": detail}}
    return {
        "messages": [{"role": "user", "content": [{"type": "text", "text": TEXT}, part]}],
        "max_tokens": 20,
    }


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_a_low_detail_image_is_reserved_at_what_openai_bills_for_it(
    path: str, gateway: RunningGateway, db: Database, fresh_upstream: FakeUpstream
) -> None:
    fresh_upstream.usage_extra = {"image_tokens": BILLED_PER_IMAGE}
    user = await funded_user(db, units=BALANCE)
    headers = {"authorization": f"Bearer {user.token}"}

    async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
        auto = await http.post(path, json={"model": MODEL, **body(path, "auto")}, headers=headers)
        assert auto.status_code == 402, auto.text  # "auto" may bill up to 48,169 tokens
        low = await http.post(path, json={"model": MODEL, **body(path, "low")}, headers=headers)
        assert low.status_code == 200, low.text

    (record,) = await settled_usage(db, user.user_id, 1)
    assert record.prompt_tokens > BILLED_PER_IMAGE  # the upstream billed the image...
    state = await money(db, user.user_id)
    assert state.reserved == 0
    assert 0 <= state.balance == BALANCE - record.credits  # ...within what was held
    assert [r["provider"] for r in fresh_upstream.requests] == ["openai"]

"""Requests the gateway refuses, each with the status an OpenAI client expects and an
OpenAI-style JSON body that says why; and requests that try to set their own price."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from portal.db import Database
from portal.tokens.service import revoke_token
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import (
    UNPRICED_MODEL,
    MakeUser,
    RunningGateway,
    config_with_unpriced_model,
)
from tests.gateway.support import money, settled_usage

pytestmark = pytest.mark.gateway

MODEL = "gpt-4.1-nano"
MESSAGES = [{"role": "user", "content": "What is two plus two"}]


def refused(
    client: openai.OpenAI, error: type[openai.APIStatusError], **extra: Any
) -> openai.APIStatusError:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20, **extra)
    return caught.value


def raw_error(
    gateway: RunningGateway, token: str | None, **body: Any
) -> tuple[int, dict[str, Any]]:
    """Status and JSON error object of a raw HTTP call (no SDK in between)."""
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 20, **body},
        headers={"Authorization": f"Bearer {token}"} if token is not None else {},
        timeout=30,
    )
    assert response.headers["content-type"].startswith("application/json"), response.text
    payload = response.json()
    assert set(payload) == {"error"}, payload
    assert {"message", "type", "code"} <= set(payload["error"]), payload
    return response.status_code, payload["error"]


def assert_error(
    error: openai.APIStatusError, status: int, error_type: str, says: str, code: str | None = None
) -> None:
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body["type"] == error_type == error.type
    assert error.code is not None
    if code is not None:  # our machine-readable reason, as OpenAI's API gives one
        assert error.code == error.body["code"] == code, error.body
    assert says in error.body["message"], error.body


async def test_bad_token_is_401(gateway: RunningGateway, fresh_upstream) -> None:
    for token in ("sk-not-a-gateway-token", "wfg_" + "0" * 43):
        error = refused(gateway.client(token), openai.AuthenticationError)
        assert_error(error, 401, "authentication_error", "Invalid gateway token", "invalid_api_key")
        status, body = raw_error(gateway, token)
        assert status == 401 and body["type"] == "authentication_error"
    status, body = raw_error(gateway, None)
    assert status == 401, body
    with pytest.raises(openai.AuthenticationError):
        gateway.client("sk-not-a-gateway-token").models.list()
    assert fresh_upstream.requests == []


async def test_revoked_token_is_refused_right_after_revocation(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream
) -> None:
    user = await make_user("1")
    client = gateway.client(user.token)
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    async with db.transaction() as session:
        await revoke_token(session, user_id=user.user_id, token_id=user.token_id)
    error = refused(client, openai.AuthenticationError)
    assert_error(error, 401, "authentication_error", "revoked", "token_revoked")
    status, body = raw_error(gateway, user.token)
    assert status == 401 and "revoked" in body["message"]
    assert len(fresh_upstream.requests) == 1


async def test_unverified_user_is_403_and_told_to_verify(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream
) -> None:
    user = await make_user("1", verified=False)
    error = refused(gateway.client(user.token), openai.PermissionDeniedError)
    assert_error(error, 403, "permission_error", "Verify your email address", "email_not_verified")
    status, body = raw_error(gateway, user.token)
    assert status == 403 and "Verify your email address" in body["message"]
    assert fresh_upstream.requests == []


@pytest.mark.parametrize("credits", ["0", "-0.5"])
async def test_no_credit_is_402(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream, credits: str
) -> None:
    user = await make_user(credits)
    for stream in (False, True):
        error = refused(gateway.client(user.token), openai.APIStatusError, stream=stream)
        assert_error(
            error, 402, "insufficient_quota", "Insufficient credits", "insufficient_credits"
        )
        status, body = raw_error(gateway, user.token, stream=stream)
        assert status == 402 and "Lower max_tokens" in body["message"]
        assert "Your balance is" in body["message"] and "needs" in body["message"]
    assert fresh_upstream.requests == []
    state = await money(db, user.user_id)
    assert state.reserved == 0


async def test_unknown_model_is_404_model_not_found(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream
) -> None:
    user = await make_user("1")
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.client(user.token).chat.completions.create(
            model="no-such-model", messages=MESSAGES, max_tokens=20
        )
    assert_error(caught.value, 404, "invalid_request_error", "does not exist", "model_not_found")
    assert fresh_upstream.requests == []


async def test_a_client_cannot_choose_its_call_id(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream
) -> None:
    """The call id keys the hold, the usage row and the debit: the gateway picks it, and a
    client's `x-litellm-call-id` header is ignored (it can neither reuse nor predict one)."""
    user = await make_user("1")
    client = gateway.client(user.token)
    answers = [
        client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=20,
            extra_headers={"x-litellm-call-id": "a-call-id-i-chose"},
        )
        for _ in range(2)
    ]
    call_ids = [answer.headers["x-litellm-call-id"] for answer in answers]
    assert "a-call-id-i-chose" not in call_ids and call_ids[0] != call_ids[1]
    records = await settled_usage(db, user.user_id, 2)
    assert sorted(r.call_id for r in records) == sorted(call_ids)
    assert all(r.credits > 0 for r in records)


async def test_a_request_cannot_set_its_own_price(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    """Every field that could skip the upstream, set a price, reuse a call id or claim
    another user is refused with 400 naming it, before anything is reserved."""
    user = await make_user("1")
    tricks = {
        "input_cost_per_token": 0,
        "output_cost_per_token": 0,
        "mock_response": "free lunch",
        "model_info": {"input_cost_per_token": 0, "output_cost_per_token": 0},
        "litellm_call_id": "someone-elses-call",
        # `metadata` itself is accepted and dropped (issue 19); LiteLLM's own key is not.
        "litellm_metadata": {"user_api_key_user_id": "someone-else"},
        "api_base": "http://127.0.0.1:1/v1",
        "api_key": "sk-mine",
        "fallbacks": ["o1-pro"],
        "user_config": {"model_list": []},
    }
    for field, value in tricks.items():
        status, body = raw_error(gateway, user.token, **{field: value})
        assert status == 400 and body["param"] == field and field in body["message"], body
    assert fresh_upstream.requests == []
    state = await money(db, user.user_id)
    assert (state.balance, state.reserved) == (10**9, 0)


async def test_a_model_with_no_price_is_refused(
    debug_gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream
) -> None:
    user = await make_user("1")
    client = debug_gateway.client(user.token)
    assert UNPRICED_MODEL in [model.id for model in client.models.list()]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=UNPRICED_MODEL, messages=MESSAGES, max_tokens=20)
    assert_error(caught.value, 400, "invalid_request_error", "no price")
    assert UNPRICED_MODEL in caught.value.body["message"]
    assert fresh_upstream.requests == []
    # The priced models of the same gateway still work.
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=20)
    assert answer.choices[0].message.content == fresh_upstream.reply_text
    assert len(await settled_usage(db, user.user_id, 1)) == 1


def test_config_check_names_the_unpriced_model(tmp_path: Path) -> None:
    check = subprocess.run(
        [
            str(Path(sys.executable).parent / "gateway-admin"),
            *("config", "check", "--config", str(config_with_unpriced_model(tmp_path))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert check.returncode != 0
    assert UNPRICED_MODEL in check.stderr and "no price" in check.stderr, check.stderr

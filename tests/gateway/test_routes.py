"""Deny by default (issue 8, point 1): the gateway's surface is a fixed list of routes.

In-process, the app's route table is enumerated and compared with the allow-list, and
every other method on those paths is tried. End to end, a funded user's valid token is
sent to every LiteLLM proxy route that used to answer (pass-through providers, health,
admin, debug, docs, UI): each is a 404 with an OpenAI-style body, nothing reaches the
upstream and nothing is charged. The read-only routes (`/v1/models`, `/v1/credits`) and
the operational ones (`/healthz`, `/readyz`, `/metrics`) answer what they promise.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import yaml
from starlette.applications import Starlette
from starlette.routing import Route

from gateway_plugins.app import build_app
from portal.credits.units import UNITS_PER_CREDIT
from portal.db import Database
from portal.settings import PROJECT_ROOT, Settings
from portal.usage.service import list_usage
from tests.fakes.upstream import FakeUpstream
from tests.fixtures.gateway import MakeUser, RunningGateway, eventually
from tests.gateway.support import money, settled_usage

POST_ROUTES = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/embeddings",
}
GET_ROUTES = {
    "/v1/models",
    "/v1/models/{id}",
    "/v1/credits",
    "/v1/calls/{id}",
    "/healthz",
    "/readyz",
    "/metrics",
}
# HEAD is Starlette's companion of every GET route (same handler, no body); we accept it
# there and nowhere else.
ALLOWED = (
    {("POST", path) for path in POST_ROUTES}
    | {("GET", path) for path in GET_ROUTES}
    | {("HEAD", path) for path in GET_ROUTES}
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Every route of LiteLLM's proxy that a gateway token used to open (issue 8), and more
# of its surface: pass-through providers, health, admin, debug, docs, UI, other APIs.
LITELLM_PROXY_PATHS = (
    "/openai/v1/chat/completions",
    "/openai/v1/responses",
    "/openrouter/v1/chat/completions",
    "/anthropic/v1/messages",
    "/gemini/v1beta/models/gemini-2.5-flash:generateContent?key={token}",
    "/gemini/v1beta/models/x:generateContent?key={token}",
    "/vertex_ai/v1/projects/p/locations/l/publishers/google/models/m:generateContent",
    "/bedrock/model/m/invoke",
    "/azure/openai/deployments/d/chat/completions",
    "/openai/deployments/d/chat/completions",
    "/engines/gpt-4o-mini/chat/completions",
    "/cohere/v1/chat",
    "/mistral/v1/chat/completions",
    "/langfuse/api/public/ingestion",
    "/chat/completions",
    "/completions",
    "/embeddings",
    "/messages",
    "/responses",
    "/models",
    "/v1/responses/resp_123",
    "/v1/batches",
    "/v1/files",
    "/v1/fine_tuning/jobs",
    "/v1/images/generations",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/moderations",
    "/v1/rerank",
    "/v1/assistants",
    "/v1/threads",
    "/v1/realtime",
    "/health",
    "/health/liveliness",
    "/health/readiness",
    "/model/info",
    "/v1/model/info",
    "/model/new",
    "/settings",
    "/routes",
    "/debug/asyncio-tasks",
    "/active/callbacks",
    "/get/config/callbacks",
    "/config/update",
    "/key/generate",
    "/key/info",
    "/user/new",
    "/team/new",
    "/spend/logs",
    "/global/spend",
    "/sso/key/generate",
    "/login",
    "/redoc",
    "/openapi.json",
    "/docs",
    "/ui",
    "/ui/",
    "/",
    "/healthz/",
    "/v1/chat/completions/",
    "/v1/credits/",
)


def normalised(path: str) -> str:
    return re.sub(r"\{\w+(:\w+)?\}", "{id}", path)


@pytest.fixture(scope="module")
def app() -> Starlette:
    """The gateway's app as the server builds it; routes exist without the lifespan."""
    return build_app(Settings.from_env({}))


@pytest.fixture
async def local(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, lifespan not run: only routes that need no runtime answer."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def assert_wrong_method(response: httpx.Response, allowed: str, *, head: bool = False) -> None:
    """405 on a served path, with the methods it does answer, and no contradiction."""
    assert response.status_code == 405, (response.request.method, response.request.url)
    assert response.headers["allow"] == allowed
    if head:
        return
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed" and allowed in error["message"], error
    assert "Unknown route" not in error["message"]


def allow_of(path: str) -> str:
    return "POST" if path in POST_ROUTES else "GET, HEAD"


def assert_unknown_route(response: httpx.Response, *, head: bool = False) -> None:
    assert response.status_code == 404, (response.request.method, response.request.url)
    assert response.headers["content-type"].startswith("application/json")
    if head:  # HEAD has no body by definition
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "unknown_url"
    assert "/v1/chat/completions" in body["error"]["message"]  # says what is served


# --------------------------------------------------------------------------- in-process


def test_the_apps_routes_are_exactly_the_allow_list(app: Starlette) -> None:
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        assert type(route) is Route, f"not a plain HTTP route: {route!r}"  # no Mount etc.
        assert route.methods, f"{route.path} accepts every method"
        served |= {(method, normalised(route.path)) for method in route.methods}
    assert served == ALLOWED, {
        "not on the allow-list": sorted(served - ALLOWED),
        "missing": sorted(ALLOWED - served),
    }


async def test_every_other_method_on_a_real_route_is_405_with_allow(
    local: httpx.AsyncClient,
) -> None:
    """Issue 19: OPTIONS/GET on /v1/chat/completions answered a 404 that listed the very
    path it refused."""
    for method, path in sorted({(m, p) for m in METHODS for p in POST_ROUTES | GET_ROUTES}):
        if (method, path) in ALLOWED:
            continue
        url = path.replace("{id}", "gpt-4.1-nano")
        response = await local.request(method, url, json={"model": "gpt-4.1-nano"})
        assert_wrong_method(response, allow_of(path), head=method == "HEAD")


async def test_head_answers_on_get_routes_only(local: httpx.AsyncClient) -> None:
    head = await local.head("/healthz")
    assert head.status_code == 200 and head.content == b""
    assert (await local.head("/metrics")).status_code == 200
    assert_wrong_method(await local.head("/v1/chat/completions"), "POST", head=True)


async def test_a_trailing_slash_is_not_redirected(local: httpx.AsyncClient) -> None:
    for path in ("/healthz/", "/metrics/", "/v1/chat/completions/", "/v1/credits/"):
        response = await local.request("POST" if "chat" in path else "GET", path)
        assert_unknown_route(response)
        assert "location" not in response.headers


async def test_metrics_needs_the_bearer_token_when_one_is_set(local: httpx.AsyncClient) -> None:
    assert (await local.get("/metrics")).status_code == 200  # no METRICS_TOKEN
    guarded = build_app(Settings.from_env({"METRICS_TOKEN": "scrape-secret-1"}))
    transport = httpx.ASGITransport(app=guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "scrape-secret-1"},
            {"x-api-key": "scrape-secret-1"},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert "wfg_gateway" not in refused.text
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
    assert allowed.status_code == 200
    assert "wfg_gateway_requests_total" in allowed.text


# --------------------------------------------------------------------------- end to end


@pytest.mark.gateway
async def test_litellm_proxy_routes_are_404_for_a_funded_user(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("10")
    before = await money(db, user.user_id)
    body = {
        "model": "gpt-4.1-nano",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 5,
        "contents": [{"parts": [{"text": "hello"}]}],
    }
    auth = ({"Authorization": f"Bearer {user.token}"}, {"x-api-key": user.token})
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for template in LITELLM_PROXY_PATHS:
            path = template.format(token=user.token)
            for method in ("GET", "POST"):
                for headers in auth:
                    response = await client.request(method, path, json=body, headers=headers)
                    assert_unknown_route(response)
                    assert user.token not in response.text
        # and the wrong methods on real routes, with a real body
        for method, path in (
            ("GET", "/v1/chat/completions"),
            ("PUT", "/v1/chat/completions"),
            ("GET", "/v1/messages"),
            ("DELETE", "/v1/responses"),
            ("PATCH", "/v1/embeddings"),
            ("GET", "/v1/completions"),
            ("POST", "/v1/models"),
            ("DELETE", "/v1/models/gpt-4.1-nano"),
            ("POST", "/v1/credits"),
            ("POST", "/healthz"),
            ("POST", "/metrics"),
            ("OPTIONS", "/v1/chat/completions"),
        ):
            response = await client.request(method, path, json=body, headers=auth[0])
            assert_wrong_method(response, allow_of(path.replace("gpt-4.1-nano", "{id}")))
    assert fresh_upstream.requests == [] and fresh_upstream.calls_served == 0
    assert await money(db, user.user_id) == before
    async with db.session() as session:
        assert await list_usage(session, user.user_id) == []
    # the access log names each path, never the token sent as ?key=
    await eventually(
        lambda: "generateContent?key=" in gateway.logs(), seconds=30, what="the access log"
    )
    assert user.token not in gateway.logs()


@pytest.mark.gateway
async def test_operational_routes_never_touch_the_upstream(
    gateway: RunningGateway, fresh_upstream: FakeUpstream
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for _ in range(3):
            health = await client.get("/healthz")
            assert health.status_code == 200 and health.json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ok"
            metrics = await client.get("/metrics")  # no METRICS_TOKEN on the session gateway
            assert metrics.status_code == 200 and "wfg_gateway_requests_total" in metrics.text
    assert fresh_upstream.requests == []


def config_model_names() -> list[str]:
    config = yaml.safe_load((PROJECT_ROOT / "config.yaml").read_text(encoding="utf-8"))
    return [entry["model_name"] for entry in config["model_list"]]


@pytest.mark.gateway
async def test_models_lists_config_yaml_and_unknown_ids_are_404(
    gateway: RunningGateway, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    user = await make_user("1")
    client = gateway.async_client(user.token)
    names = config_model_names()
    assert sorted([model.id async for model in client.models.list()]) == sorted(set(names))
    for name in names:
        assert (await client.models.retrieve(name)).id == name
    for unknown in ("o1-pro", "openai/gpt-4o-mini", "gpt-4.1-nano/extra", "x" * 300):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve(unknown)
        assert caught.value.body["code"] == "model_not_found", caught.value.body
        assert caught.value.body["type"] == "invalid_request_error"
    # The Anthropic-style header opens the same read.
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as raw:
        listed = await raw.get("/v1/models", headers={"x-api-key": user.token})
        assert sorted(m["id"] for m in listed.json()["data"]) == sorted(set(names))
        for path in ("/v1/models", "/v1/models/gpt-4.1-nano"):
            refused = await raw.get(path)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "invalid_api_key"
    assert fresh_upstream.requests == []


@pytest.mark.gateway
async def test_credits_shows_the_callers_own_balance(
    gateway: RunningGateway, db: Database, make_user: MakeUser, fresh_upstream: FakeUpstream
) -> None:
    alice, bob = await make_user("10"), await make_user("2.5")

    async def credits(headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as raw:
            return await raw.get("/v1/credits", headers=headers)

    mine = await credits({"Authorization": f"Bearer {alice.token}"})
    assert mine.status_code == 200
    data = mine.json()
    assert data["balance"] == "10" and data["balance_units"] == 10 * UNITS_PER_CREDIT
    assert data["reserved_units"] == 0 and data["plan"] == "free"
    assert (await credits({"x-api-key": alice.token})).json() == data
    theirs = (await credits({"x-api-key": bob.token})).json()
    assert theirs["balance"] == "2.5" and theirs["balance_units"] == 5 * UNITS_PER_CREDIT // 2

    # After a call, the balance shown is the ledger's, to the unit.
    await gateway.async_client(alice.token).chat.completions.create(
        model="gpt-4.1-nano", messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    [record] = await settled_usage(db, alice.user_id, 1)
    after = (await credits({"Authorization": f"Bearer {alice.token}"})).json()
    assert after["balance_units"] == 10 * UNITS_PER_CREDIT - record.credits > 0
    assert after["balance_units"] == (await money(db, alice.user_id)).balance
    assert after["reserved_units"] == 0
    assert (await credits({"x-api-key": bob.token})).json() == theirs  # bob's unchanged

    for headers in ({}, {"Authorization": "Bearer wfg_" + "0" * 43}, {"x-api-key": "nope"}):
        refused = await credits(headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert "balance" not in refused.text

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway_plugins import litellm_bridge
from gateway_plugins.litellm_bridge import Router
from tests.fakes.upstream import FakeUpstream
from tests.gateway.litellm_pins.support import router_on


@pytest.fixture(scope="module")
async def router(upstream: FakeUpstream) -> AsyncIterator[Router]:
    with router_on(upstream) as router:
        yield router
        await litellm_bridge.close_upstream_clients(router)

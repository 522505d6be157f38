"""The gateway's start-up heap is frozen out of garbage collection once the app is built
(gateway_plugins/heap.py says why; the CPU it saves is measured in bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway_plugins.app import build_app
from gateway_plugins.heap import freeze_startup_heap, pause_collection_for_startup
from portal.settings import Settings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_garbage_made_while_serving_is_still_collected(restored_collector: None) -> None:
    pause_collection_for_startup()
    assert not gc.isenabled()
    from_startup = _Node()
    freeze_startup_heap()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 1000  # this process's modules, at least
    served = weakref.ref(_Node())
    gc.collect()
    assert served() is None
    assert from_startup.me is from_startup


async def test_the_app_freezes_its_start_up_heap_before_serving(
    tmp_path: Path, restored_collector: None
) -> None:
    gc.unfreeze()
    env = {"WFG_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    app = build_app(Settings.from_env(env))
    loop = asyncio.get_running_loop()
    executor = loop._default_executor  # type: ignore[attr-defined]
    pause_collection_for_startup()  # as gateway_plugins.server.create_app does
    try:
        async with app.router.lifespan_context(app):
            assert gc.isenabled()
            assert gc.get_freeze_count() > 1000
    finally:  # the lifespan also sets the loop's default executor (litellm_bridge)
        loop.set_default_executor(executor or ThreadPoolExecutor())

"""The circuit breaker's state machine on a clock the test moves, and the guard and
budget built on it (`gateway_plugins.breaker`)."""

from __future__ import annotations

import asyncio

import pytest

from gateway_plugins.breaker import Breaker, Budget, DependencyDown, Guard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock) -> Breaker:
    return Breaker("db", failures=3, probe_seconds=5, clock=clock)


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count() -> None:
    clock = Clock()
    b = breaker(clock)
    b.failed()
    b.failed()
    b.succeeded()  # not consecutive any more
    b.failed()
    b.failed()
    assert b.state == "closed" and b.allow()
    b.failed()
    assert b.state == "open" and not b.allow()
    assert b.opened == 1


def test_half_opens_after_the_interval_and_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed()
    clock.now += 4.9
    assert not b.allow() and b.state == "open"
    clock.now += 0.1
    assert b.state == "half_open"
    assert b.allow()  # the probe
    assert not b.allow() and not b.allow()  # everyone else, while it is out
    b.succeeded()
    assert b.state == "closed" and b.allow()


def test_a_failed_probe_opens_it_for_another_interval() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed()
    clock.now += 5
    assert b.allow()
    b.failed()  # one failure is enough in half-open
    assert b.state == "open" and not b.allow()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()
    assert b.opened == 2


def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.failed()
    clock.now += 5
    assert b.allow()
    b.abandoned()
    assert b.allow()


async def test_the_guard_counts_timeouts_and_outages_not_answers() -> None:
    clock = Clock()
    guard = Guard(breaker(clock), 0.01, outage=lambda exc: not isinstance(exc, KeyError))
    for _ in range(5):  # answers (KeyError here) never open it
        with pytest.raises(KeyError):
            async with guard.call():
                raise KeyError("refused, as an answer")
    assert guard.breaker.state == "closed"
    for _ in range(3):
        with pytest.raises(TimeoutError):
            async with guard.call():
                await asyncio.Event().wait()  # never answers: the deadline ends it
    assert guard.breaker.state == "open" and not guard.available()
    with pytest.raises(DependencyDown):
        async with guard.call():
            raise AssertionError("not tried while open")


async def test_a_budget_is_shared_by_every_use_and_refuses_once_spent() -> None:
    guard = Guard(Breaker("redis", failures=100, probe_seconds=5), 10, outage=lambda _: True)
    budget = Budget(guard, 0.05)
    assert await budget.run(lambda: asyncio.sleep(0, "first")) == "first"
    with pytest.raises(TimeoutError):
        await budget.run(lambda: asyncio.sleep(10))  # ends when the 50 ms are gone
    assert budget.left <= 0
    with pytest.raises(DependencyDown):
        await budget.run(lambda: asyncio.sleep(0))

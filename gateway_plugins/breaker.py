"""A circuit breaker and a deadline for one dependency (PostgreSQL, Redis), so a
dependency that hangs costs calls one deadline per probe interval, not one per call.

    closed ──(`failures` consecutive failures or timeouts)──> open
    open ──(`probe_seconds` passed; the next call is let through as the probe)──> half-open
    half-open ──(the probe succeeds)──> closed
    half-open ──(the probe fails or times out)──> open (for another `probe_seconds`)

While open (and while a probe is in flight) `Guard.call` raises `DependencyDown` at once,
without touching the dependency; the caller takes its fallback (503 at admission, the
spool for a settlement, local limits without Redis). What counts as a failure is the
caller's to say (`outage`): a refusal the dependency answered with (a constraint, an
unknown token) is an answer, not an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal, TypeVar

__all__ = ["Breaker", "BreakerState", "Budget", "DependencyDown", "Guard"]

T = TypeVar("T")

BreakerState = Literal["closed", "open", "half_open"]


class DependencyDown(Exception):
    """The dependency's breaker is open: not tried (the caller takes its fallback)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} unavailable (circuit open)")
        self.name = name


class Breaker:
    """The state machine alone, on an injectable clock (`time.monotonic` by default)."""

    def __init__(
        self,
        name: str,
        *,
        failures: int,
        probe_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures = failures
        self.probe_seconds = probe_seconds
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened = 0  # times it opened (a metric and a test's witness)

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.probe_seconds:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may try the dependency now; in half-open, only the first (the
        probe) may, until it reports."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.probe_seconds:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        self._consecutive += 1
        if self._probing or (self._opened_at is None and self._consecutive >= self.failures):
            self._opened_at = self._clock()
            self.opened += 1
        self._probing = False

    def abandoned(self) -> None:
        """The call that was let through ended without an answer either way (cancelled):
        a probe may be sent again."""
        self._probing = False


class Guard:
    """A breaker and a deadline: `async with guard.call(seconds):` runs the block under
    `asyncio.timeout(seconds)` (TimeoutError when it passes) and reports its outcome to
    the breaker; DependencyDown at once while the breaker is open."""

    def __init__(
        self, breaker: Breaker, deadline_seconds: float, outage: Callable[[BaseException], bool]
    ) -> None:
        self.breaker = breaker
        self.deadline_seconds = deadline_seconds
        self._outage = outage

    @property
    def name(self) -> str:
        return self.breaker.name

    def available(self) -> bool:
        """Whether the breaker would let a call through now (no probe is taken)."""
        return self.breaker.state != "open" and not self.breaker._probing

    @asynccontextmanager
    async def call(self, seconds: float | None = None) -> AsyncIterator[None]:
        if not self.breaker.allow():
            raise DependencyDown(self.breaker.name)
        try:
            async with asyncio.timeout(self.deadline_seconds if seconds is None else seconds):
                yield
        except asyncio.CancelledError:
            self.breaker.abandoned()
            raise
        except BaseException as exc:
            if isinstance(exc, TimeoutError) or self._outage(exc):
                self.breaker.failed()
            else:
                self.breaker.succeeded()
            raise
        self.breaker.succeeded()

    def report(self) -> dict[str, object]:
        """What /readyz shows of it."""
        return {
            "state": self.breaker.state,
            "deadline_seconds": self.deadline_seconds,
            "opens_after_failures": self.breaker.failures,
            "probe_seconds": self.breaker.probe_seconds,
        }


class Budget:
    """One call's allowance of a guarded dependency: every use of it during the call
    together within `seconds` (Redis: `DependencySettings.redis_budget_seconds`). Once
    it is spent, or while the breaker is open, `run` raises DependencyDown without trying."""

    __slots__ = ("guard", "left", "timed_out")

    def __init__(self, guard: Guard, seconds: float) -> None:
        self.guard = guard
        self.left = seconds
        self.timed_out = False
        """An operation was sent and its answer not awaited: it may have happened."""

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        if self.left <= 0:
            raise DependencyDown(self.guard.name)
        started = time.monotonic()
        try:
            async with self.guard.call(self.left):
                return await operation()
        except TimeoutError:
            self.timed_out = True
            raise
        finally:
            self.left -= time.monotonic() - started

    def renewed(self) -> Budget:
        """A fresh allowance on the same guard (freeing a slot at the end of a call must
        not be skipped because admission spent the first: a slot left behind refuses
        the user's later calls until it expires)."""
        return Budget(self.guard, self.guard.deadline_seconds)

"""Step 3: limit. Per-plan requests per minute, tokens per minute and calls in flight,
shared by every gateway instance and worker through Redis.

- RPM: a moving window (exact: a burst can never exceed the plan's number in any 60 s),
  one entry per admitted call.
- TPM: a fixed one-minute window that starts with the first tokens counted, counted from
  actual usage once a call is settled; a call is admitted while the window still has
  room. (Counting before the call would need a second tokenizer pass; credits, not TPM,
  bound what a user can spend.)
- In flight: one entry per call, which expires with the request deadline, so a slot held
  by a process that died frees itself. A call frees its slot when it is settled (a
  stream: before its final event), and that same step counts its tokens.

Admission is **one** round trip: a Lua script checks the three limits and takes the RPM
entry and the slot together, atomically (a call refused for its calls in flight takes no
RPM entry); the end of a call is one more (free the slot, count the tokens). This is
hand-written rather than `limits`' strategies, which the gateway used before: `limits`
checks one limit per round trip and cannot combine them, which cost five round trips per
call (~0.5 ms of the gateway's CPU per call, bench/RESULTS.md) and let a refused call
consume an RPM entry. The windows keep `limits`' semantics (moving window for RPM, fixed
window for TPM), and the tests check them on both backends.

Without `REDIS_URL` the same counters live in process memory (`_InProcess`: one worker
only; the config check refuses more), updated on the event loop: no thread, no I/O.

While Redis is unreachable the limits are **not** enforced (fail open, logged and counted
in `wfg_gateway_limiter_unavailable_total`): every call is still authenticated, reserved
against the database balance and metered, so an outage of Redis costs no money and no
availability, only rate limiting.
"""

from __future__ import annotations

import collections
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from portal.config.plugin_settings import PlanLimits
from portal.errors import RateLimited

__all__ = ["InFlightSlot", "RateLimiter"]

log = logging.getLogger(__name__)

_PREFIX = "wfg:limits"
WINDOW_SECONDS = 60
_NONE = -1  # "no limit of this kind" in the scripts' arguments

# KEYS: tpm, rpm, in-flight. ARGV: tpm, rpm and in-flight limits (-1: none), the call's
# member, the slot's lifetime (s). Returns {0, 0} admitted, else {1 tpm | 2 rpm | 3 in
# flight, milliseconds until a retry can succeed}. Time is the Redis server's, so every
# instance counts on one clock.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tpm, rpm, inflight = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if tpm >= 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  if used >= tpm then return {1, redis.call('PTTL', KEYS[1])} end
end
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60)
  if redis.call('ZCARD', KEYS[2]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, math.ceil((tonumber(oldest[2]) + 60 - now) * 1000)}
  end
end
if inflight >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= inflight then return {3, 1000} end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[5])) + 5)
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('EXPIRE', KEYS[2], 61)
end
return {0, 0}
"""
# KEYS: in-flight, tpm. ARGV: the member ('' when no slot was taken), tokens to count.
_FINISH = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  if redis.call('INCRBY', KEYS[2], tokens) == tokens then
    redis.call('EXPIRE', KEYS[2], 60)
  end
end
return 1
"""
_REFUSED_BY = {1: "tpm", 2: "rpm", 3: "in flight"}


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


def _refusal(kind: str, limits: PlanLimits, retry_seconds: float) -> RateLimited:
    message = {
        "tpm": f"Rate limit reached: {limits.tpm} tokens per minute on your plan.",
        "rpm": f"Rate limit reached: {limits.rpm} requests per minute on your plan.",
        "in flight": (
            f"Rate limit reached: at most {limits.max_parallel_requests} calls in flight "
            "at once on your plan."
        ),
    }[kind]
    return RateLimited(message, _retry_after(retry_seconds))


class _Counters(Protocol):
    async def admit(
        self, user_id: str, limits: PlanLimits, member: str, slot_seconds: float
    ) -> tuple[str, float] | None:
        """None when admitted, else (which limit, seconds until a retry can succeed)."""

    async def finish(self, user_id: str, member: str, tokens: int) -> None:
        """Free the call's slot (member '' if none was taken), count its tokens."""


def _limit(value: int | None) -> int:
    return _NONE if value is None else value


class _InRedis:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._admit = redis.register_script(_ADMIT)
        self._finish = redis.register_script(_FINISH)

    async def admit(
        self, user_id: str, limits: PlanLimits, member: str, slot_seconds: float
    ) -> tuple[str, float] | None:
        refused, wait_ms = await self._admit(
            keys=[f"{_PREFIX}:tpm:{user_id}", f"{_PREFIX}:rpm:{user_id}",
                  f"{_PREFIX}:inflight:{user_id}"],
            args=[_limit(limits.tpm), _limit(limits.rpm), _limit(limits.max_parallel_requests),
                  member, slot_seconds],
        )  # fmt: skip
        if not refused:
            return None
        return _REFUSED_BY[int(refused)], max(int(wait_ms), 0) / 1000

    async def finish(self, user_id: str, member: str, tokens: int) -> None:
        await self._finish(
            keys=[f"{_PREFIX}:inflight:{user_id}", f"{_PREFIX}:tpm:{user_id}"],
            args=[member, tokens],
        )


@dataclass
class _UserCounters:
    tpm_used: int = 0
    tpm_window_ends: float = 0.0
    rpm_admitted: collections.deque[float] = field(default_factory=collections.deque)
    in_flight: dict[str, float] = field(default_factory=dict)  # member -> expires


class _InProcess:
    """The script's counters in process memory, on the monotonic clock."""

    def __init__(self) -> None:
        self._users: dict[str, _UserCounters] = {}
        self._next_sweep = 0.0

    async def admit(
        self, user_id: str, limits: PlanLimits, member: str, slot_seconds: float
    ) -> tuple[str, float] | None:
        now = time.monotonic()
        self._sweep(now)
        user = self._users.setdefault(user_id, _UserCounters())
        if limits.tpm is not None and now < user.tpm_window_ends and user.tpm_used >= limits.tpm:
            return "tpm", user.tpm_window_ends - now
        admitted = user.rpm_admitted
        while admitted and admitted[0] <= now - WINDOW_SECONDS:
            admitted.popleft()
        if limits.rpm is not None and len(admitted) >= limits.rpm:
            return "rpm", admitted[0] + WINDOW_SECONDS - now
        if limits.max_parallel_requests is not None:
            held = user.in_flight
            for expired in [m for m, expires in held.items() if expires <= now]:
                del held[expired]
            if len(held) >= limits.max_parallel_requests:
                return "in flight", 1.0
            held[member] = now + slot_seconds
        if limits.rpm is not None:
            admitted.append(now)
        return None

    async def finish(self, user_id: str, member: str, tokens: int) -> None:
        user = self._users.get(user_id)
        if user is None:
            return
        user.in_flight.pop(member, None)
        if tokens > 0:
            now = time.monotonic()
            if now >= user.tpm_window_ends:
                user.tpm_used, user.tpm_window_ends = 0, now + WINDOW_SECONDS
            user.tpm_used += tokens

    def _sweep(self, now: float) -> None:
        """Forget users with nothing left to count, once a minute (bounds memory)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + WINDOW_SECONDS
        for user_id, user in list(self._users.items()):
            idle = not user.in_flight and now >= user.tpm_window_ends
            if idle and (not user.rpm_admitted or user.rpm_admitted[-1] <= now - WINDOW_SECONDS):
                del self._users[user_id]


@dataclass
class InFlightSlot:
    """An admitted call's hold on its limits. `release(tokens)` frees the slot and counts
    the call's tokens toward TPM; only the first call does anything."""

    limiter: RateLimiter | None
    user_id: str
    member: str
    counts_tokens: bool

    async def release(self, tokens: int = 0) -> None:
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            await limiter._finish(self, tokens if self.counts_tokens else 0)


class RateLimiter:
    def __init__(self, redis: aioredis.Redis | None) -> None:
        self._counters: _Counters = _InRedis(redis) if redis is not None else _InProcess()
        self.unavailable = 0  # calls admitted without a check while Redis was down

    async def admit(
        self, user_id: str, limits: PlanLimits, deadline_seconds: float
    ) -> InFlightSlot:
        """Check TPM, RPM and calls in flight and take the call's entries; RateLimited
        (429, with Retry-After) otherwise."""
        counts_tokens = limits.tpm is not None
        if limits.rpm is None and limits.max_parallel_requests is None and not counts_tokens:
            return InFlightSlot(None, user_id, "", False)
        member = uuid.uuid4().hex
        try:
            refused = await self._counters.admit(user_id, limits, member, deadline_seconds)
        except Exception as exc:  # Redis unreachable: fail open (module docstring)
            self.unavailable += 1
            log.warning("rate limiter unavailable (%s); call admitted", type(exc).__name__)
            return InFlightSlot(None, user_id, "", False)
        if refused is not None:
            raise _refusal(refused[0], limits, refused[1])
        taken = member if limits.max_parallel_requests is not None else ""
        return InFlightSlot(self, user_id, taken, counts_tokens)

    async def _finish(self, slot: InFlightSlot, tokens: int) -> None:
        if not slot.member and tokens <= 0:
            return
        try:
            await self._counters.finish(slot.user_id, slot.member, tokens)
        except Exception as exc:  # the slot expires with the request deadline
            log.warning("rate limiter unavailable (%s); slot and tokens left", type(exc).__name__)

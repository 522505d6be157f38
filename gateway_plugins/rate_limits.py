"""Step 3: limit. Per-plan requests per minute, tokens per minute and calls in flight,
shared by every gateway instance and worker through Redis.

- RPM: a moving window (exact: a burst can never exceed the plan's number in any 60 s),
  one entry per admitted call.
- TPM: a fixed one-minute window that starts with the first tokens counted. A call's
  tokens are counted at admission, as reserved (its counted prompt plus the output cap),
  once the prompt is counted (`InFlightSlot.reserve_tokens`: one more round trip, only
  on plans with a TPM limit): it is refused (429) unless they fit in what the window has
  left — or the window is empty, so one call larger than the limit still runs, alone.
  At settlement the count is corrected to the tokens used (`release(tokens)`; a call
  with no answer gives its reservation back). So no burst takes more than the plan's
  TPM (or one call) in any window: calls in flight count before they finish.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from gateway_plugins.redis_scripts import KeptScripts, Script
from portal.config.plugin_settings import LimitSettings, PlanLimits
from portal.errors import RateLimited
from portal.tokens.auth_cache import FORMAT as AUTH_CACHE_FORMAT

__all__ = ["CachedAdmission", "InFlightSlot", "RateLimiter"]

log = logging.getLogger(__name__)

_PREFIX = "wfg:limits"
WINDOW_SECONDS = 60
_NONE = -1  # "no limit of this kind" in the scripts' arguments

# The admission itself, shared by both scripts below. Returns {0, 0} admitted, else
# {1 tpm | 2 rpm | 3 in flight, milliseconds until a retry can succeed}. Limits of -1:
# none of that kind. Time is the Redis server's, so every instance counts on one clock.
_ADMISSION = """
local function admit(k_tpm, k_rpm, k_inflight, tpm, rpm, inflight, member, slot_seconds)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  if tpm >= 0 then
    local used = tonumber(redis.call('GET', k_tpm) or '0')
    if used >= tpm then return {1, redis.call('PTTL', k_tpm)} end
  end
  if rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', k_rpm, '-inf', now - 60)
    if redis.call('ZCARD', k_rpm) >= rpm then
      local oldest = redis.call('ZRANGE', k_rpm, 0, 0, 'WITHSCORES')
      return {2, math.ceil((tonumber(oldest[2]) + 60 - now) * 1000)}
    end
  end
  if inflight >= 0 then
    redis.call('ZREMRANGEBYSCORE', k_inflight, '-inf', now)
    if redis.call('ZCARD', k_inflight) >= inflight then return {3, 1000} end
    redis.call('ZADD', k_inflight, now + slot_seconds, member)
    redis.call('EXPIRE', k_inflight, math.ceil(slot_seconds) + 5)
  end
  if rpm >= 0 then
    redis.call('ZADD', k_rpm, now, member)
    redis.call('EXPIRE', k_rpm, 61)
  end
  return {0, 0}
end
"""
# KEYS: tpm, rpm, in-flight. ARGV: tpm, rpm and in-flight limits, the call's member, the
# slot's lifetime (s).
_ADMIT = (
    _ADMISSION
    + """
return admit(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]),
             tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))
"""
)
# The token check and the admission in one round trip: KEYS: the token's auth-cache entry
# (`portal.tokens.auth_cache`, JSON with `user_id` and `plan`). ARGV: the key prefix, the
# call's member, the slot's lifetime, the cache entry's format, the default plan's tpm,
# rpm and in-flight limits, then (plan, tpm, rpm, in flight) for each plan. Returns {-1}
# when the token is not cached, else the admission's two values and the entry. The
# limits' keys are made here from the entry's user id (standalone Redis or Sentinel, as
# the auth cache's own scripts).
_ADMIT_CACHED_TOKEN = (
    _ADMISSION
    + """
local entry = redis.call('GET', KEYS[1])
if not entry then return {-1} end
local ok, identity = pcall(cjson.decode, entry)
if not ok or type(identity) ~= 'table' or identity.v ~= tonumber(ARGV[4])
   or type(identity.user_id) ~= 'string' then
  return {-1}
end
local tpm, rpm, inflight = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
for i = 8, #ARGV, 4 do
  if ARGV[i] == identity.plan then
    tpm, rpm, inflight = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    break
  end
end
local p, user = ARGV[1] .. ':', identity.user_id
local result = admit(p .. 'tpm:' .. user, p .. 'rpm:' .. user, p .. 'inflight:' .. user,
                     tpm, rpm, inflight, ARGV[2], tonumber(ARGV[3]))
return {result[1], result[2], entry}
"""
)
# KEYS: tpm. ARGV: the call's reserved tokens, the tpm limit. Returns {0, 0} counted,
# else {1, milliseconds until the window ends}: refused unless the tokens fit in what the
# window has left, or the window is empty.
_RESERVE_TOKENS = """
local tokens, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 and used + tokens > limit then return {1, redis.call('PTTL', KEYS[1])} end
if tokens > 0 and redis.call('INCRBY', KEYS[1], tokens) == tokens then
  redis.call('EXPIRE', KEYS[1], 60)
end
return {0, 0}
"""
# KEYS: in-flight, tpm, rpm. ARGV: the slot's member ('' when no slot was taken), the
# tokens to add to TPM (used − reserved: negative gives back what was reserved but not
# used, in the window still open, never below 0), the RPM entry to take back ('' to keep
# it: only a call refused after its admission, by validation or TPM, gets it back).
_FINISH = """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[3]) end
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  if redis.call('INCRBY', KEYS[2], tokens) == tokens then
    redis.call('EXPIRE', KEYS[2], 60)
  end
elseif tokens < 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('INCRBY', KEYS[2], tokens) < 0 then
    redis.call('SET', KEYS[2], 0, 'KEEPTTL')
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

    async def reserve_tokens(self, user_id: str, tokens: int, tpm: int) -> float | None:
        """Count `tokens` toward TPM if they fit (None), else the seconds until they may."""

    async def finish(self, user_id: str, member: str, tokens: int, refund: str) -> None:
        """Free the call's slot (member '' if none was taken), add `tokens` (negative:
        take back) to TPM, take back the RPM entry `refund` ('' for none)."""


def _limit(value: int | None) -> int:
    return _NONE if value is None else value


def _keys(user_id: str) -> tuple[str, str, str]:
    """tpm, rpm, in flight."""
    return f"{_PREFIX}:tpm:{user_id}", f"{_PREFIX}:rpm:{user_id}", f"{_PREFIX}:inflight:{user_id}"


def _refused(refused: int, wait_ms: int) -> tuple[str, float] | None:
    return None if not refused else (_REFUSED_BY[refused], max(wait_ms, 0) / 1000)


@dataclass(frozen=True)
class CachedAdmission:
    """What `RateLimiter.admit_cached_token` found: the token's auth-cache entry, and the
    call's admission under the limits of the plan that entry names."""

    entry: bytes
    refused: tuple[str, float] | None
    member: str


_ADMIT_SCRIPT = Script(_ADMIT)
_ADMIT_CACHED_TOKEN_SCRIPT = Script(_ADMIT_CACHED_TOKEN)
_RESERVE_TOKENS_SCRIPT = Script(_RESERVE_TOKENS)
_FINISH_SCRIPT = Script(_FINISH)


class _InRedis:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.scripts = KeptScripts(redis)  # `gateway_plugins.redis_scripts` says why

    async def admit(
        self, user_id: str, limits: PlanLimits, member: str, slot_seconds: float
    ) -> tuple[str, float] | None:
        refused, wait_ms = await self.scripts.run(
            _ADMIT_SCRIPT,
            _keys(user_id),
            [_limit(limits.tpm), _limit(limits.rpm), _limit(limits.max_parallel_requests),
             member, slot_seconds],
        )  # fmt: skip
        return _refused(int(refused), int(wait_ms))

    async def admit_cached_token(
        self, token_key: str, plans: Sequence[str | int], member: str, slot_seconds: float
    ) -> CachedAdmission | None:
        answer = await self.scripts.run(
            _ADMIT_CACHED_TOKEN_SCRIPT, [token_key], [_PREFIX, member, slot_seconds, *plans]
        )
        if int(answer[0]) < 0:
            return None
        return CachedAdmission(answer[2], _refused(int(answer[0]), int(answer[1])), member)

    async def reserve_tokens(self, user_id: str, tokens: int, tpm: int) -> float | None:
        refused, wait_ms = await self.scripts.run(
            _RESERVE_TOKENS_SCRIPT, [_keys(user_id)[0]], [tokens, tpm]
        )
        return max(int(wait_ms), 0) / 1000 if int(refused) else None

    async def finish(self, user_id: str, member: str, tokens: int, refund: str) -> None:
        tpm, rpm, inflight = _keys(user_id)
        await self.scripts.run(_FINISH_SCRIPT, [inflight, tpm, rpm], [member, tokens, refund])


@dataclass
class _UserCounters:
    tpm_used: int = 0
    tpm_window_ends: float = 0.0
    rpm_admitted: collections.deque[tuple[float, str]] = field(default_factory=collections.deque)
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
        while admitted and admitted[0][0] <= now - WINDOW_SECONDS:
            admitted.popleft()
        if limits.rpm is not None and len(admitted) >= limits.rpm:
            return "rpm", admitted[0][0] + WINDOW_SECONDS - now
        if limits.max_parallel_requests is not None:
            held = user.in_flight
            for expired in [m for m, expires in held.items() if expires <= now]:
                del held[expired]
            if len(held) >= limits.max_parallel_requests:
                return "in flight", 1.0
            held[member] = now + slot_seconds
        if limits.rpm is not None:
            admitted.append((now, member))
        return None

    async def reserve_tokens(self, user_id: str, tokens: int, tpm: int) -> float | None:
        now = time.monotonic()
        user = self._users.setdefault(user_id, _UserCounters())
        used = user.tpm_used if now < user.tpm_window_ends else 0
        if used > 0 and used + tokens > tpm:
            return user.tpm_window_ends - now
        self._count(user, tokens, now)
        return None

    async def finish(self, user_id: str, member: str, tokens: int, refund: str) -> None:
        user = self._users.get(user_id)
        if user is None:
            return
        user.in_flight.pop(member, None)
        if refund:
            kept = [entry for entry in user.rpm_admitted if entry[1] != refund]
            user.rpm_admitted = collections.deque(kept)
        now = time.monotonic()
        if tokens > 0:
            self._count(user, tokens, now)
        elif tokens < 0 and now < user.tpm_window_ends:  # what was reserved and not used
            user.tpm_used = max(0, user.tpm_used + tokens)

    @staticmethod
    def _count(user: _UserCounters, tokens: int, now: float) -> None:
        if tokens <= 0:
            return
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
            last = user.rpm_admitted[-1][0] if user.rpm_admitted else None
            if idle and (last is None or last <= now - WINDOW_SECONDS):
                del self._users[user_id]


@dataclass
class InFlightSlot:
    """An admitted call's hold on its limits. `reserve_tokens(n)` counts the call's
    reserved tokens toward TPM (RateLimited when they do not fit); `release(tokens)`
    frees the slot and corrects TPM to the tokens used (0: no answer, the reservation is
    given back); `release(refund=True)` (a call refused after its admission) also takes
    back its RPM entry. Only the first release does anything."""

    limiter: RateLimiter | None
    user_id: str
    member: str  # the in-flight entry ('' when the plan has no such limit)
    counts_tokens: bool
    rpm_entry: str = ""  # the RPM entry ('' when the plan has no RPM limit)
    tpm: int | None = None  # the plan's TPM limit
    reserved_tokens: int = 0  # counted toward TPM at admission

    async def reserve_tokens(self, tokens: int) -> None:
        """Count the call's reserved tokens toward TPM, or RateLimited (429)."""
        limiter, tpm = self.limiter, self.tpm
        if limiter is not None and tpm is not None and tokens > 0:
            self.reserved_tokens = tokens if await limiter._reserve_tokens(self, tokens, tpm) else 0

    async def release(self, tokens: int = 0, *, refund: bool = False) -> None:
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            counted = tokens - self.reserved_tokens if self.counts_tokens else 0
            await limiter._finish(self, counted, self.rpm_entry if refund else "")


class RateLimiter:
    def __init__(self, redis: aioredis.Redis | None) -> None:
        self._in_redis = _InRedis(redis) if redis is not None else None
        self._counters: _Counters = self._in_redis or _InProcess()
        self.unavailable = 0  # calls admitted without a check while Redis was down
        self._plans: tuple[LimitSettings, list[str | int]] | None = None  # built once

    async def admit(
        self, user_id: str, limits: PlanLimits, deadline_seconds: float
    ) -> InFlightSlot:
        """Check TPM, RPM and calls in flight and take the call's entries; RateLimited
        (429, with Retry-After) otherwise."""
        if not _has_limits(limits):
            return InFlightSlot(None, user_id, "", False)
        member = uuid.uuid4().hex
        try:
            refused = await self._counters.admit(user_id, limits, member, deadline_seconds)
        except Exception as exc:  # Redis unreachable: fail open (module docstring)
            self._failed_open(exc)
            return InFlightSlot(None, user_id, "", False)
        return self.admitted(user_id, limits, member, refused)

    async def admit_cached_token(
        self, token_key: str, plans: LimitSettings, deadline_seconds: float
    ) -> CachedAdmission | None:
        """With Redis: the token's auth-cache entry (key `token_key`) and the call's
        admission under the limits of the entry's plan, in one round trip. None when the
        token is not cached (or there is no Redis, or it fails): then the caller checks the
        token in the database and calls `admit`. The caller turns the answer into a slot
        with `admitted`, once it has read the entry."""
        if self._in_redis is None:
            return None
        if self._plans is None or self._plans[0] is not plans:
            self._plans = plans, _plan_table(plans)
        member = uuid.uuid4().hex
        try:
            return await self._in_redis.admit_cached_token(
                token_key, self._plans[1], member, deadline_seconds
            )
        except Exception as exc:
            log.warning("auth cache and limiter unavailable (%s)", type(exc).__name__)
            return None

    def admitted(
        self, user_id: str, limits: PlanLimits, member: str, refused: tuple[str, float] | None
    ) -> InFlightSlot:
        """The slot of an admission (`member` its entries), or RateLimited."""
        if refused is not None:
            raise _refusal(refused[0], limits, refused[1])
        if not _has_limits(limits):
            return InFlightSlot(None, user_id, "", False)
        taken = member if limits.max_parallel_requests is not None else ""
        rpm_entry = member if limits.rpm is not None else ""
        return InFlightSlot(self, user_id, taken, limits.tpm is not None, rpm_entry, limits.tpm)

    async def close(self) -> None:
        """Give back the Redis connections the limiter keeps (before Redis is closed)."""
        if self._in_redis is not None:
            await self._in_redis.scripts.close()

    def _failed_open(self, exc: Exception) -> None:
        self.unavailable += 1
        log.warning("rate limiter unavailable (%s); call admitted", type(exc).__name__)

    async def _reserve_tokens(self, slot: InFlightSlot, tokens: int, tpm: int) -> bool:
        """True when counted, False when Redis failed (fail open); RateLimited when the
        tokens do not fit in the window."""
        try:
            wait = await self._counters.reserve_tokens(slot.user_id, tokens, tpm)
        except Exception as exc:  # Redis unreachable: fail open (module docstring)
            self._failed_open(exc)
            return False
        if wait is not None:
            raise RateLimited(
                f"Rate limit reached: {tpm} tokens per minute on your plan "
                f"(this call reserves {tokens}: its prompt and max_tokens).",
                _retry_after(wait),
            )
        return True

    async def _finish(self, slot: InFlightSlot, tokens: int, refund: str) -> None:
        if not slot.member and tokens == 0 and not refund:
            return
        try:
            await self._counters.finish(slot.user_id, slot.member, tokens, refund)
        except Exception as exc:  # the slot expires with the request deadline
            log.warning("rate limiter unavailable (%s); slot and tokens left", type(exc).__name__)


def _has_limits(limits: PlanLimits) -> bool:
    return not (limits.rpm is None and limits.max_parallel_requests is None and limits.tpm is None)


def _plan_table(plans: LimitSettings) -> list[str | int]:
    """The admission script's plan arguments: the entry format, the default plan's limits,
    then each plan's name and limits."""
    table: list[str | int] = [AUTH_CACHE_FORMAT, *_three(plans.for_plan(plans.default_plan))]
    for name, limits in plans.plans.items():
        table += [name, *_three(limits)]
    return table


def _three(limits: PlanLimits) -> tuple[int, int, int]:
    return _limit(limits.tpm), _limit(limits.rpm), _limit(limits.max_parallel_requests)

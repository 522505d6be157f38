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

While Redis is unreachable (an error, the call's Redis budget spent, or its breaker open:
`gateway_plugins.breaker`) each process enforces its **share** of every limit on its own,
in process memory (`_InProcess`): ⌊limit ÷ `limits.expected_instances`⌋, at least 1
(`LimitSettings.local_share`), never unlimited. With the expected number of processes
running, a user's calls in flight stay within the plan's `max_parallel_requests`, so the
overspend bound holds with Redis down (docs/operations.md). A call admitted locally frees
its slot locally; the local counters know nothing of what Redis counted before the outage
(and Redis nothing of them after), so for one request deadline after Redis goes away a
user can have the plan's slots taken through Redis still running beside the local share.
Such admissions are counted in `RateLimiter.unavailable` and logged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import redis.asyncio as aioredis

from gateway_plugins.breaker import Budget
from portal.config.plugin_settings import LimitSettings, PlanLimits
from portal.errors import RateLimited
from portal.tokens.auth_cache import FORMAT as AUTH_CACHE_FORMAT

__all__ = ["CachedAdmission", "InFlightSlot", "RateLimiter"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_PREFIX = "wfg:limits"
WINDOW_SECONDS = 60
_NONE = -1  # "no limit of this kind" in the scripts' arguments
_FORGET_SECONDS = 5.0  # taking back entries of a timed-out admission, in the background

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


class _InRedis:
    """The scripts through redis-py's client and its pool (`register_script`: EVALSHA, the
    whole script once when Redis does not know it). The client's deadline and retry are
    the gateway's (`gateway_plugins.runtime.redis_client`)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._admit = redis.register_script(_ADMIT)
        self._admit_cached_token = redis.register_script(_ADMIT_CACHED_TOKEN)
        self._reserve_tokens = redis.register_script(_RESERVE_TOKENS)
        self._finish = redis.register_script(_FINISH)

    async def admit(
        self, user_id: str, limits: PlanLimits, member: str, slot_seconds: float
    ) -> tuple[str, float] | None:
        refused, wait_ms = await self._admit(
            _keys(user_id),
            [_limit(limits.tpm), _limit(limits.rpm), _limit(limits.max_parallel_requests),
             member, slot_seconds],
        )  # fmt: skip
        return _refused(int(refused), int(wait_ms))

    async def admit_cached_token(
        self, token_key: str, plans: Sequence[str | int], member: str, slot_seconds: float
    ) -> CachedAdmission | None:
        answer = await self._admit_cached_token(
            [token_key], [_PREFIX, member, slot_seconds, *plans]
        )
        if int(answer[0]) < 0:
            return None
        return CachedAdmission(answer[2], _refused(int(answer[0]), int(answer[1])), member)

    async def reserve_tokens(self, user_id: str, tokens: int, tpm: int) -> float | None:
        refused, wait_ms = await self._reserve_tokens([_keys(user_id)[0]], [tokens, tpm])
        return max(int(wait_ms), 0) / 1000 if int(refused) else None

    async def finish(self, user_id: str, member: str, tokens: int, refund: str) -> None:
        tpm, rpm, inflight = _keys(user_id)
        await self._finish([inflight, tpm, rpm], [member, tokens, refund])


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
    local: bool = False  # admitted on this process's counters (Redis was unavailable)
    budget: Budget | None = None  # the call's Redis budget, for freeing the slot
    reserved_tokens: int = 0  # counted toward TPM at admission

    async def reserve_tokens(self, tokens: int) -> None:
        """Count the call's reserved tokens toward TPM, or RateLimited (429)."""
        limiter, tpm = self.limiter, self.tpm
        if limiter is not None and tpm is not None and tokens > 0:
            self.reserved_tokens = tokens if await limiter._reserve_tokens(self, tokens, tpm) else 0

    async def release(self, tokens: int = 0, *, refund: bool = False) -> None:
        """Free the slot and count `tokens`; `refund` also takes back the RPM entry (a
        refusal after admission, by validation or by the gateway's own dependencies)."""
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            counted = tokens - self.reserved_tokens if self.counts_tokens else 0
            await limiter._finish(self, counted, self.rpm_entry if refund else "")


class RateLimiter:
    """The limits in Redis when there is one (`redis`), with this process's share of
    them (`settings.local_share`) in memory while it is unavailable; in memory alone,
    in full, without Redis."""

    def __init__(self, redis: aioredis.Redis | None, settings: LimitSettings | None = None) -> None:
        self._in_redis = _InRedis(redis) if redis is not None else None
        self._local = _InProcess()
        self._settings = settings or LimitSettings()
        self.unavailable = 0  # calls admitted on the local share while Redis was down
        self._plans: tuple[LimitSettings, list[str | int]] | None = None  # built once
        self._forgetting: set[asyncio.Future[None]] = set()

    async def admit(
        self,
        user_id: str,
        limits: PlanLimits,
        deadline_seconds: float,
        budget: Budget | None = None,
    ) -> InFlightSlot:
        """Check TPM, RPM and calls in flight and take the call's entries; RateLimited
        (429, with Retry-After) otherwise. Redis is used within the call's `budget`;
        past it (or on any Redis error) the local share decides."""
        if not _has_limits(limits):
            return InFlightSlot(None, user_id, "", False)
        member = uuid.uuid4().hex
        in_redis = self._in_redis
        if in_redis is None:
            refused = await self._local.admit(user_id, limits, member, deadline_seconds)
            return self.admitted(user_id, limits, member, refused)
        try:
            refused = await _within(
                budget, lambda: in_redis.admit(user_id, limits, member, deadline_seconds)
            )
        except Exception as exc:  # Redis unavailable: this process's share (docstring)
            if isinstance(exc, TimeoutError):
                self.forget(user_id, member)
            return await self.admit_locally(user_id, limits, deadline_seconds, budget, exc)
        slot = self.admitted(user_id, limits, member, refused)
        slot.budget = budget
        return slot

    async def admit_locally(
        self,
        user_id: str,
        limits: PlanLimits,
        deadline_seconds: float,
        budget: Budget | None,
        why: BaseException,
    ) -> InFlightSlot:
        """Redis failed (`why`): the call is checked against this process's share of
        `limits` in memory, and its slot will be freed there."""
        self.unavailable += 1
        log.warning("rate limiter unavailable (%s); local share enforced", type(why).__name__)
        share = self._settings.local_share(limits)
        member = uuid.uuid4().hex
        refused = await self._local.admit(user_id, share, member, deadline_seconds)
        slot = self.admitted(user_id, share, member, refused)
        slot.local, slot.budget = True, budget
        return slot

    async def admit_cached_token(
        self,
        token_key: str,
        plans: LimitSettings,
        deadline_seconds: float,
        budget: Budget | None = None,
        member: str | None = None,
    ) -> CachedAdmission | None:
        """With Redis: the token's auth-cache entry (key `token_key`) and the call's
        admission under the limits of the entry's plan, in one round trip. None when the
        token is not cached (or there is no Redis, or it fails within `budget`): then the
        caller checks the token in the database and calls `admit`. The caller turns the
        answer into a slot with `admitted`, once it has read the entry. `member`: the
        call's entries (the caller `forget`s them if the script timed out)."""
        in_redis = self._in_redis
        if in_redis is None:
            return None
        if self._plans is None or self._plans[0] is not plans:
            self._plans = plans, _plan_table(plans)
        member, table = member or uuid.uuid4().hex, self._plans[1]
        try:
            return await _within(
                budget,
                lambda: in_redis.admit_cached_token(token_key, table, member, deadline_seconds),
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

    def forget(self, user_id: str, member: str) -> None:
        """An admission whose script was sent but not answered within the call's budget
        may have taken its RPM entry and slot in Redis while the call went on locally:
        take them back in the background (not on the call's time), so a busy moment does
        not leave slots that refuse the user's later calls until they expire."""
        in_redis = self._in_redis
        if in_redis is None:
            return

        async def take_back() -> None:
            try:
                async with asyncio.timeout(_FORGET_SECONDS):
                    await in_redis.finish(user_id, member, 0, member)
            except Exception as exc:  # they expire with the request deadline
                log.warning("rate limiter entries left to expire (%s)", type(exc).__name__)

        task = asyncio.ensure_future(take_back())
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def _reserve_tokens(self, slot: InFlightSlot, tokens: int, tpm: int) -> bool:
        """True when counted, False when Redis failed within the call's budget (the
        tokens are then counted at the end alone); RateLimited when the tokens do not fit
        in the window. A slot admitted locally reserves on this process's counters."""
        in_redis = self._in_redis
        try:
            if slot.local or in_redis is None:
                wait = await self._local.reserve_tokens(slot.user_id, tokens, tpm)
            else:
                budget = slot.budget
                wait = await _within(
                    budget, lambda: in_redis.reserve_tokens(slot.user_id, tokens, tpm)
                )
        except Exception as exc:  # Redis unavailable: counted at settlement instead
            log.warning("rate limiter unavailable (%s); TPM counted at the end", type(exc).__name__)
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
        in_redis = self._in_redis
        if slot.local or in_redis is None:
            await self._local.finish(slot.user_id, slot.member, tokens, refund)
            return
        budget = slot.budget.renewed() if slot.budget is not None else None
        try:
            await _within(
                budget, lambda: in_redis.finish(slot.user_id, slot.member, tokens, refund)
            )
        except Exception as exc:  # the slot expires with the request deadline
            log.warning("rate limiter unavailable (%s); slot and tokens left", type(exc).__name__)


async def _within(budget: Budget | None, operation: Callable[[], Awaitable[T]]) -> T:
    """`operation` within the call's Redis budget (and breaker), or on its own."""
    return await (operation() if budget is None else budget.run(operation))


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

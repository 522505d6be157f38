"""Step 3: limit. Per-plan requests per minute, tokens per minute and calls in flight,
shared by every gateway instance and worker through Redis.

- RPM: `limits`' moving window (exact: a burst can never exceed the plan's number in any
  60 s), one entry per admitted call.
- TPM: `limits`' fixed one-minute window, counted from actual usage once a call is
  settled; a call is admitted while the window still has room. (Counting before the call
  would need a second tokenizer pass; credits, not TPM, bound what a user can spend.)
- In flight: a Redis sorted set per user whose members expire with the request deadline,
  so a slot held by a process that died frees itself (`limits` has no concurrency
  primitive; this is one short Lua script). A stream frees its slot when it ends.

Without `REDIS_URL` the same strategies count in process memory (one worker only; the
config check refuses more). While Redis is unreachable the limits are **not** enforced
(fail open, logged and counted in `wfg_gateway_limiter_unavailable_total`): every call
is still authenticated, reserved against the database balance and metered, so an outage
of Redis costs no money and no availability, only rate limiting.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from portal.config.plugin_settings import PlanLimits
from portal.errors import RateLimited

__all__ = ["InFlightSlot", "RateLimiter"]

log = logging.getLogger(__name__)

_PREFIX = "wfg:limits"
# KEYS[1]: the user's in-flight set. ARGV: now, expires_at, member, limit, key ttl (s)
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _retry_after(seconds: float) -> int:
    return max(1, int(seconds + 0.999))


@dataclass
class InFlightSlot:
    """A held call-in-flight slot; `release()` is idempotent."""

    limiter: RateLimiter | None
    user_id: str
    member: str

    async def release(self) -> None:
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            await limiter._release(self.user_id, self.member)


class RateLimiter:
    def __init__(self, redis_url: str | None, redis: aioredis.Redis | None) -> None:
        storage: Storage = (
            RedisStorage(
                redis_url.replace("redis://", "async+redis://", 1).replace(
                    "rediss://", "async+rediss://", 1
                ),
                implementation="redispy",
                key_prefix=_PREFIX,
            )
            if redis_url
            else MemoryStorage()
        )
        self._requests = MovingWindowRateLimiter(storage)
        self._tokens = FixedWindowRateLimiter(storage)
        self._redis = redis
        self._acquire = redis.register_script(_ACQUIRE) if redis is not None else None
        self._local: dict[str, set[str]] = {}
        self.unavailable = 0  # calls admitted without a check while Redis was down

    async def admit(
        self, user_id: str, limits: PlanLimits, deadline_seconds: float
    ) -> InFlightSlot:
        """Check RPM and TPM, take an in-flight slot; RateLimited (429) otherwise."""
        try:
            if limits.tpm is not None:
                item = RateLimitItemPerMinute(limits.tpm)
                if not await self._tokens.test(item, "tpm", user_id):
                    stats = await self._tokens.get_window_stats(item, "tpm", user_id)
                    raise RateLimited(
                        f"Rate limit reached: {limits.tpm} tokens per minute on your plan.",
                        _retry_after(stats.reset_time - time.time()),
                    )
            if limits.rpm is not None:
                item = RateLimitItemPerMinute(limits.rpm)
                if not await self._requests.hit(item, "rpm", user_id):
                    stats = await self._requests.get_window_stats(item, "rpm", user_id)
                    raise RateLimited(
                        f"Rate limit reached: {limits.rpm} requests per minute on your plan.",
                        _retry_after(stats.reset_time - time.time()),
                    )
            return await self._take_slot(user_id, limits.max_parallel_requests, deadline_seconds)
        except RateLimited:
            raise
        except Exception as exc:  # Redis unreachable: fail open (module docstring)
            self.unavailable += 1
            log.warning("rate limiter unavailable (%s); call admitted", type(exc).__name__)
            return InFlightSlot(None, user_id, "")

    async def record_tokens(self, user_id: str, limits: PlanLimits, tokens: int) -> None:
        if limits.tpm is None or tokens <= 0:
            return
        try:
            await self._tokens.hit(RateLimitItemPerMinute(limits.tpm), "tpm", user_id, cost=tokens)
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); tokens not counted", type(exc).__name__)

    async def _take_slot(
        self, user_id: str, limit: int | None, deadline_seconds: float
    ) -> InFlightSlot:
        if limit is None:
            return InFlightSlot(None, user_id, "")
        member = uuid.uuid4().hex
        if self._acquire is None:
            held = self._local.setdefault(user_id, set())
            if len(held) >= limit:
                raise RateLimited(_parallel_message(limit), 1)
            held.add(member)
            return InFlightSlot(self, user_id, member)
        now = time.time()
        taken = await self._acquire(
            keys=[f"{_PREFIX}:inflight:{user_id}"],
            args=[now, now + deadline_seconds, member, limit, int(deadline_seconds) + 5],
        )
        if not taken:
            raise RateLimited(_parallel_message(limit), 1)
        return InFlightSlot(self, user_id, member)

    async def _release(self, user_id: str, member: str) -> None:
        if self._redis is None:
            held = self._local.get(user_id)
            if held is not None:
                held.discard(member)
                if not held:
                    del self._local[user_id]
            return
        try:
            await self._redis.zrem(f"{_PREFIX}:inflight:{user_id}", member)
        except Exception as exc:  # the member expires with the request deadline
            log.warning("in-flight slot release failed (%s)", type(exc).__name__)


def _parallel_message(limit: int) -> str:
    return f"Rate limit reached: at most {limit} calls in flight at once on your plan."

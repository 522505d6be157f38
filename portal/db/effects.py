"""Work that must follow a commit, owned by the transaction that needs it.

A service that changes something another system mirrors (the gateways' auth cache in
Redis) registers the follow-up on the session it was given, in the same transaction:

    after_commit(session, drop_cached_checks, key="auth-cache")

`Database.transaction()` runs what was registered once its COMMIT has succeeded, in the
order registered, and drops it all on a rollback (or a failed commit), so a rolled-back
change never reaches the cache and a committed one cannot be forgotten by a caller. An
effect that fails is logged (its name and the exception type, never its arguments) and
the others still run: the commit stands, and each effect needs its own fallback (the
auth cache's entries expire).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AfterCommit", "Effect", "after_commit", "attach", "registered"]

log = logging.getLogger(__name__)

Effect = Callable[[], Awaitable[Any]]
_INFO_KEY = "portal.db.after_commit"


class AfterCommit:
    """The effects one transaction has collected, by key (the first registration of a
    key wins, so a service can register once per transaction and add to its own state)."""

    def __init__(self) -> None:
        self._effects: dict[Hashable, Effect] = {}

    def add(self, effect: Effect, *, key: Hashable | None = None) -> None:
        self._effects.setdefault(object() if key is None else key, effect)

    def get(self, key: Hashable) -> Effect | None:
        return self._effects.get(key)

    def __len__(self) -> int:
        return len(self._effects)

    async def run(self) -> None:
        """Run every effect once, in order; a failure is logged and the rest still run."""
        effects, self._effects = list(self._effects.values()), {}
        for effect in effects:
            try:
                await effect()
            except Exception as exc:
                name = getattr(effect, "__qualname__", type(effect).__qualname__)
                log.error("after-commit effect %s failed (%s)", name, type(exc).__name__)


def attach(session: AsyncSession) -> AfterCommit:
    """Give `session` a collector (`Database.transaction()` does, for each transaction)."""
    collector = AfterCommit()
    session.info[_INFO_KEY] = collector
    return collector


def registered(session: AsyncSession) -> AfterCommit:
    """The collector of the transaction `session` is in; RuntimeError outside
    `Database.transaction()`, where nothing would run the effects."""
    collector = session.info.get(_INFO_KEY)
    if not isinstance(collector, AfterCommit):
        raise RuntimeError("after-commit effects need a session from Database.transaction()")
    return collector


def after_commit(session: AsyncSession, effect: Effect, *, key: Hashable | None = None) -> None:
    """Run `effect` after the transaction `session` is in commits; never on rollback.
    With `key`, later registrations of the same key are ignored."""
    registered(session).add(effect, key=key)

"""The hand-written paths the gateway takes past its libraries, and the switch that puts
each back on its library for an A/B (`bench/README.md`): `WFG_FAST_PATHS_OFF`, a
comma-separated list of names (`Settings.fast_paths_off`), read once at start; empty in
production.

A path stays only while a current A/B shows it saves at least 5% of a plain or streamed
call's CPU in the gateway process (`bench/RESULTS.md`, "Fast paths, A/B"):

- `inline_sqlite`: SQLite on `portal.db.sqlite_inline` (statements on the event loop)
  instead of aiosqlite (a worker thread per connection, a hop per DBAPI call). Off, the
  per-call statements go through SQLAlchemy Core too (the driver path needs it).
- `driver`: the per-call statements (token check, hold, settlement) sent by asyncpg or
  the inline driver itself (`portal.db.driver.Driver`) instead of SQLAlchemy Core
  (`portal.db.driver.CoreDriver`, the same statements); both on connections of
  SQLAlchemy's pool.

Removed by the same rule: connections kept out of SQLAlchemy's pool, and the limiter's
scripts on Redis connections kept out of redis-py's pool.
"""

from __future__ import annotations

from gateway_plugins.ab_switches import named

__all__ = ["NAMES", "turned_off"]

NAMES = frozenset({"inline_sqlite", "driver"})


def turned_off(setting: str) -> frozenset[str]:
    """The names in `setting` (WFG_FAST_PATHS_OFF); an unknown one stops the start."""
    return named("WFG_FAST_PATHS_OFF", setting, NAMES)

"""A durable spool for settlements the database did not take.

LiteLLM swallows exceptions raised in success callbacks, so if the database is briefly
unreachable the debit would be lost. Instead the gateway appends the call's metadata
(never content) as one JSON line to a file under `var/spool/`, fsyncs it, and replays
the spool later; settlement is idempotent by call id, so a replay never double-debits.

Files, all in the spool directory:
- `usage-<host>-<pid>.jsonl`: appended to by that worker, each line under a short `flock`;
- `usage-retry-<uuid>.jsonl`: lines a replay could not settle yet;
- `claimed-<uuid>.replaying`: a file a replayer renamed and locked (after any line
  being written finished); one left behind by a crash is picked up again;
- `rejected-<uuid>.jsonl`: lines the database refused as data (not as an outage),
  kept for an operator instead of blocking every later line.

Every step writes the new file before removing the old one, so a crash at any point
leaves each line in at least one file; replaying a line twice is harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

from sqlalchemy.exc import DataError, IntegrityError

from portal.usage.settlement import FinishedCall

__all__ = ["Spool"]

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def _path(self) -> Path:
        # The host name too: workers of two containers sharing a volume may have one pid.
        return self.directory / f"usage-{socket.gethostname()}-{os.getpid()}.jsonl"

    def append(self, call: FinishedCall) -> None:
        """Write one line durably. Never waits for a replayer (this runs on the event loop)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(call.to_json(), separators=(",", ":")) + "\n"
        while True:
            with open(self._path, "a", encoding="utf-8") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a replayer claimed this file: open a fresh one
                if not _still_at(handle, self._path):
                    continue  # claimed between our open and our lock
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
                return

    def pending(self) -> int:
        """Lines waiting for replay (rejected lines are not pending)."""
        return sum(len(_lines(path)) for path in self._files())

    def rejected(self) -> int:
        return sum(len(_lines(path)) for path in self.directory.glob("rejected-*.jsonl"))

    async def replay(self, settle: Callable[[FinishedCall], Awaitable[object]]) -> int:
        """Settle every spooled call. Returns how many were settled; stops at the first
        failure that looks like an outage (the database is still down)."""
        replayed = 0
        for path in self._files():
            with self._claim(path) as claimed:
                if claimed is None:
                    continue
                lines = _lines(claimed)
                for index, line in enumerate(lines):
                    try:
                        await settle(FinishedCall.from_json(json.loads(line)))
                    except (ValueError, TypeError, KeyError, IntegrityError, DataError) as exc:
                        # This line can never settle as written: set it aside, go on.
                        log.error("usage spool line rejected: %s", type(exc).__name__)
                        self._write_new("rejected", [line])
                        continue
                    except Exception as exc:
                        log.warning("usage spool replay paused: %s", type(exc).__name__)
                        self._write_new("usage-retry", lines[index:])
                        claimed.unlink()
                        return replayed
                    replayed += 1
                claimed.unlink()
        return replayed

    @contextlib.contextmanager
    def _claim(self, path: Path) -> Iterator[Path | None]:
        """Rename `path` to a claimed file and hold its lock; None if someone else has it."""
        if path.suffix != ".replaying":
            claimed = path.with_name(f"claimed-{uuid.uuid4().hex}.replaying")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                yield None
                return
        else:
            claimed = path
        try:
            handle = open(claimed, encoding="utf-8")  # noqa: SIM115 (held across the yield)
        except FileNotFoundError:
            yield None
            return
        with handle:
            try:
                # Blocks only while a writer that opened the file before the rename is
                # finishing its line; fails at once for a file another replayer holds.
                fcntl.flock(handle, fcntl.LOCK_EX | (fcntl.LOCK_NB if claimed is path else 0))
            except BlockingIOError:
                yield None
                return
            yield claimed if claimed.exists() else None

    def _write_new(self, kind: str, lines: list[str]) -> None:
        final = self.directory / f"{kind}-{uuid.uuid4().hex}.jsonl"
        temporary = final.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(final)

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(
            [*self.directory.glob("usage-*.jsonl"), *self.directory.glob("claimed-*.replaying")]
        )


def _still_at(handle: IO[str], path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()]

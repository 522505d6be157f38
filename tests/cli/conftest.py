"""Run `.venv/bin/gateway-admin` as operators do: a real process, configured only by its
environment (DATABASE_URL, WFG_VAR_DIR)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.services import scratch_postgres_database

GATEWAY_ADMIN = Path(sys.executable).parent / "gateway-admin"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> str:
        """Assert success; the standard output."""
        assert self.code == 0, self.stderr
        assert self.stderr == "", self.stderr
        return self.stdout

    def failed(self) -> str:
        """Assert an operator-friendly failure; the one line of reason on stderr."""
        assert self.code != 0, self.stdout
        assert self.stdout == ""
        assert "Traceback" not in self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and lines[0].strip(), self.stderr
        assert lines[0].startswith("gateway-admin"), lines[0]
        return lines[0]


class Admin:
    def __init__(self, database_url: str, var_dir: Path) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "WFG_DATABASE_URL", "WFG_CONFIG", "REDIS_URL"}
        }
        self.env = {
            **env,
            "DATABASE_URL": database_url,
            "WFG_VAR_DIR": str(var_dir),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        self.cwd = var_dir

    def __call__(self, *args: str, stdin: str = "", **env: str) -> Result:
        done = subprocess.run(
            [str(GATEWAY_ADMIN), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **env},
            cwd=self.cwd,
            timeout=120,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def many(self, *commands: tuple[str, ...]) -> list[Result]:
        """Independent commands side by side (each pays its own interpreter start)."""
        return side_by_side(*(functools.partial(self, *command) for command in commands))


def side_by_side(*calls: Callable[[], Result]) -> list[Result]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture
def admin(database_url: str, tmp_path: Path) -> Admin:
    """`gateway-admin` against the session's migrated test database (use with `db`,
    which empties the tables after the test)."""
    return Admin(database_url, tmp_path)


@pytest.fixture
def offline_admin(tmp_path: Path) -> Admin:
    """`gateway-admin` for commands that must not need a database (its URL points at a
    file that does not exist)."""
    return Admin(f"sqlite:///{tmp_path / 'absent' / 'never-created.db'}", tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but was never migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with scratch_postgres_database("wfg_cli") as url:
        yield url

"""A newcomer's `.env` is honoured: `gateway-admin`, run where the file is, puts its state
where the file says; the environment still wins; a bad value is named in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from portal.settings import ENV_FILE_VARIABLE, environment_variables
from tests.cli.conftest import GATEWAY_ADMIN, Result


def run_in(directory: Path, *args: str, **env: str) -> Result:
    """`gateway-admin` in `directory`, with none of our variables in its environment."""
    ours = {*environment_variables(), ENV_FILE_VARIABLE}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    done = subprocess.run(
        [str(GATEWAY_ADMIN), *args],
        capture_output=True,
        text=True,
        env={**clean, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **env},
        cwd=directory,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_wfg_var_dir_in_dotenv_is_where_the_database_goes(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# copied from .env.example\nWFG_VAR_DIR=./state\n")
    out = run_in(tmp_path, "db", "upgrade").ok()
    assert "applied" in out
    assert (tmp_path / "state" / "workforce.db").is_file()
    assert not (tmp_path / "var").exists()


def test_the_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WFG_VAR_DIR=./from-file\n")
    run_in(tmp_path, "db", "upgrade", WFG_VAR_DIR=str(tmp_path / "from-env")).ok()
    assert (tmp_path / "from-env" / "workforce.db").is_file()
    assert not (tmp_path / "from-file").exists()


def test_a_bad_value_in_dotenv_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"WFG_VAR_DIR={tmp_path}\nGATEWAY_WORKERS=many\n")
    line = run_in(tmp_path, "db", "upgrade").failed()
    assert line == "gateway-admin: error: GATEWAY_WORKERS must be a whole number, got 'many'"
    assert not (tmp_path / "workforce.db").exists()

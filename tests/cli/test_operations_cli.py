"""`gateway-admin` input checks and `config check`, `db upgrade`, `schema prisma`:
every bad input exits non-zero with one line on stderr and no traceback."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from alembic import command
from alembic.script import ScriptDirectory

from portal.cli.prisma_schema import render_prisma_schema
from portal.db.migrate import alembic_config
from portal.settings import PROJECT_ROOT
from tests.cli.conftest import Admin, side_by_side
from tests.cli.test_config_check import KEYS as PROVIDER_KEYS


def test_bad_input_is_refused_before_touching_the_database(
    offline_admin: Admin, tmp_path: Path
) -> None:
    grant = ("credits", "grant", "--email", "a@example.com", "--reason", "r", "--amount")
    cases = {
        (*grant, "nan"): "--amount: not a number of credits: 'nan'",
        (*grant, "0"): "--amount must not be zero",
        (*grant, "1e30"): "--amount: too many credits",  # was a bare decimal.InvalidOperation
        ("credits", "grant", "--email", "a@example.com", "--amount", "1"): "required: --reason",
        ("tokens", "revoke", "--email", "a@example.com"): "one of the arguments",
    }
    results = offline_admin.many(*cases)
    for (args, expected), result in zip(cases.items(), results, strict=True):
        reason = result.failed()
        assert expected in reason, (args, reason)
    create = ("users", "create", "--email", "a@example.com", "--name", "A", "--password-stdin")
    short = offline_admin(*create, stdin="too short\n")
    assert "passwords are 10 to 1024 characters long" in short.failed()
    assert not (tmp_path / "absent" / "never-created.db").exists()


def test_commands_against_a_database_that_is_not_migrated(
    offline_admin: Admin, empty_database_url: str
) -> None:
    balance = ("credits", "balance", "--email", "a@example.com")
    unmigrated = offline_admin(*balance, DATABASE_URL=empty_database_url)
    assert "not migrated yet; run `gateway-admin db upgrade`" in unmigrated.failed()
    first = offline_admin("db", "upgrade", DATABASE_URL=empty_database_url).ok()
    head = ScriptDirectory.from_config(alembic_config(empty_database_url)).get_current_head()
    assert "up to date" not in first  # a fresh database says what was applied
    assert "applied" in first and "0001  initial schema" in first
    assert f"database is now at {head}" in first
    command.check(alembic_config(empty_database_url))  # at head: nothing left to migrate
    again = offline_admin("db", "upgrade", DATABASE_URL=empty_database_url).ok()
    assert "up to date: no migrations to apply" in again and "applied" not in again


def test_unreachable_or_unsupported_databases(offline_admin: Admin) -> None:
    nowhere = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    down, mysql = side_by_side(
        functools.partial(offline_admin, "db", "upgrade", DATABASE_URL=nowhere),
        functools.partial(
            offline_admin, "credits", "balance", "--email", "a@example.com",
            DATABASE_URL="mysql://root@127.0.0.1/wfg",
        ),
    )  # fmt: skip
    assert "cannot reach the database (ConnectionRefusedError: " in down.failed()
    assert "sqlite:///path or postgresql://" in mysql.failed()


def test_config_check(offline_admin: Admin, tmp_path: Path) -> None:
    priced = {"input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7}
    model = {"model_name": "m", "litellm_params": {"model": "openai/m"}, "model_info": priced}
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"model_list": [model], "workforce_gateway": {"markup": 2}}))
    broken = tmp_path / "broken.yaml"
    broken.write_text("model_list:\n  - model_name: [unclosed\n")
    shipped, typo_result, broken_result = side_by_side(
        functools.partial(offline_admin, "config", "check", **PROVIDER_KEYS),
        functools.partial(offline_admin, "config", "check", WFG_CONFIG=str(typo)),
        functools.partial(offline_admin, "config", "check", "--config", str(broken)),
    )
    assert shipped.ok().startswith(f"{PROJECT_ROOT / 'config.yaml'}: ok")
    assert "gpt-4.1-nano" in shipped.stdout
    assert "workforce_gateway.markup: Extra inputs are not permitted" in typo_result.failed()
    assert f"{broken}: not valid YAML" in broken_result.failed()


def test_schema_prisma_check(offline_admin: Admin, tmp_path: Path) -> None:
    stale = tmp_path / "stale.prisma"
    stale.write_text(render_prisma_schema().replace("BigInt", "Int"))
    committed, outdated = offline_admin.many(
        ("schema", "prisma", "--check"), ("schema", "prisma", "--check", "--output", str(stale))
    )
    assert "schema.prisma is up to date" in committed.ok()
    assert "out of date; run `gateway-admin schema prisma`" in outdated.failed()

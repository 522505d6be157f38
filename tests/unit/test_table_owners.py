"""Each table has one module that writes it; everything else calls that module.

Read with `ast` over portal/ and gateway_plugins/: `insert(Model)`, `update(Model)`,
`delete(Model)` (or `Model.__table__`), `insert_ignore(session, Model, …)` and constructing
a model (`Model(…)`, which is how `session.add` adds a row) may name a table's model only
in its owner.
A write whose model is a variable (not a model's name) is allowed only in the generic
helpers listed below. Out of reach of this check: attribute changes on a loaded row
(`user.email = …`) and `session.delete(row)`; those are reviewed by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

from portal.models import Base
from portal.settings import PROJECT_ROOT

# table -> the module that writes it. Two modules only where a table's columns are split
# between two jobs, each named.
OWNERS: dict[str, tuple[str, ...]] = {
    "users": ("portal/accounts/service.py",),
    "account_links": ("portal/accounts/links.py",),
    "throttle_counters": ("portal/accounts/throttle.py",),
    "web_sessions": (
        "portal/sessions/service.py",
        "portal/sessions/flash.py",  # only `flash_sealed`, the one-time message
    ),
    "gateway_tokens": (
        "portal/tokens/service.py",  # the token, its limit
        "portal/tokens/spending.py",  # the counters of what it used, in the money statements
    ),
    "ledger_entries": ("portal/credits/ledger.py",),
    "credit_accounts": (
        "portal/credits/ledger.py",  # `balance`, with every ledger entry
        "portal/credits/reservations.py",  # `reserved`, the holds of calls in flight
    ),
    "reservations": ("portal/credits/reservations.py",),
    "usage_records": ("portal/usage/settlement.py",),
    "connect_codes": ("portal/connect/service.py",),
    "billing_accounts": ("portal/billing/service.py",),
    "stripe_events": ("portal/billing/events.py",),
    "email_log": ("portal/email/service.py",),
    "auto_top_ups": ("portal/credits/top_up_settings.py",),
    "auto_top_up_attempts": ("portal/billing/auto_top_up.py",),
    "balance_alerts": ("portal/credits/alerts.py",),
}

# (module, function) that write a table passed in as an argument.
GENERIC_WRITERS = {
    ("portal/db/upsert.py", "insert_ignore"),  # its callers are checked as writers
    ("portal/db/upsert.py", "_insert_ignoring"),  # the statement it runs
    # Retention's purge: deletes rows past their window from the tables it has a rule
    # for (data-driven, `portal/retention/rules.py`); never inserts or updates.
    ("portal/retention/rules.py", "_deleting"),
}

_WRITES = {"insert", "update", "delete"}
_DIALECTS = {"postgresql", "sqlite"}


def _dialect_dml(func: ast.expr) -> bool:
    """`postgresql.insert(…)` / `sqlite.insert(…)`: a dialect's own INSERT (ON CONFLICT)."""
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in _DIALECTS
    )


def _models() -> dict[str, str]:
    """Model class name -> table name."""
    return {m.class_.__name__: m.local_table.name for m in Base.registry.mappers}


def _writes(path: Path, models: dict[str, str]) -> list[tuple[str, str, int, str]]:
    """(table or "?", how, line, function) for every write found in `path`."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
            continue
        name = getattr(function, "name", "<module>")
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else None
            callee = node.func.id if isinstance(node.func, ast.Name) else callee
            if callee in models and isinstance(node.func, ast.Name):
                found.append((models[callee], f"{callee}(…)", node.lineno, name))
                continue
            if callee in _WRITES and (isinstance(node.func, ast.Name) or _dialect_dml(node.func)):
                target = node.args[0] if node.args else None
            elif callee == "insert_ignore" and len(node.args) > 1:
                target = node.args[1]
            else:
                continue
            if isinstance(target, ast.Attribute) and target.attr == "__table__":
                target = target.value  # `update(Model.__table__)`: a Core statement on its table
            if isinstance(target, ast.Name) and target.id in models:
                found.append((models[target.id], f"{callee}({target.id})", node.lineno, name))
            else:
                found.append(("?", f"{callee}(<variable>)", node.lineno, name))
    # a call nested in two functions is seen twice; keep the innermost function's name
    unique: dict[tuple[str, str, int], str] = {}
    for table, how, line, function_name in found:
        if (table, how, line) not in unique or unique[(table, how, line)] == "<module>":
            unique[(table, how, line)] = function_name
    return [(t, h, line, f) for (t, h, line), f in unique.items()]


def _sources() -> list[Path]:
    return sorted((PROJECT_ROOT / "portal").rglob("*.py")) + sorted(
        (PROJECT_ROOT / "gateway_plugins").rglob("*.py")
    )


def test_every_table_has_an_owner() -> None:
    assert set(OWNERS) == set(Base.metadata.tables), "name the module that writes each table"


def test_only_the_owner_writes_a_table() -> None:
    models = _models()
    wrong = []
    for path in _sources():
        module = str(path.relative_to(PROJECT_ROOT))
        if module.startswith("portal/migrations/"):
            continue  # Alembic migrations shape the schema; they are not services
        for table, how, line, function in _writes(path, models):
            if table == "?":
                if (module, function) not in GENERIC_WRITERS:
                    wrong.append(f"{module}:{line} {how} in {function}: name the model")
            elif module not in OWNERS[table]:
                wrong.append(f"{module}:{line} {how} writes {table}, owned by {OWNERS[table]}")
    assert not wrong, "writes outside the owner:\n" + "\n".join(wrong)


def test_the_check_sees_the_kinds_of_write(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "async def f(session):\n"
        "    await session.execute(update(LedgerEntry).values(note=None))\n"
        "    session.add(User(email='x'))\n"
        "    await insert_ignore(session, CreditAccount, user_id='u')\n"
        "    await session.execute(delete(model))\n"
        "    await session.execute(insert(Reservation.__table__))\n"
        "    await session.execute(postgresql.insert(UsageRecord.__table__))\n"
        "    await session.execute(sqlite.insert(table))\n"
        "    await session.delete(row)\n",
        encoding="utf-8",
    )
    assert sorted((t, h) for t, h, _, _ in _writes(sample, _models())) == [
        ("?", "delete(<variable>)"),
        ("?", "insert(<variable>)"),
        ("credit_accounts", "insert_ignore(CreditAccount)"),
        ("ledger_entries", "update(LedgerEntry)"),
        ("reservations", "insert(Reservation)"),
        ("usage_records", "insert(UsageRecord)"),
        ("users", "User(…)"),
    ]

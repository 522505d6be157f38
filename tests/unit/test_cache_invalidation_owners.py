"""Entry points never invalidate the gateways' auth cache by hand (docs/architecture.md,
"Effects after the commit"): the services that change a token check register it on
their transaction, so a view or a command can neither forget it nor run it before the
commit.

Every module under portal/web and portal/cli is read with `ast`; a call to, or an
import of, an invalidation function, or an import of the auth cache module, fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

from portal.settings import PROJECT_ROOT

ENTRY_POINTS = ("portal/web", "portal/cli")
INVALIDATIONS = {
    "invalidate_token",
    "invalidate_user",
    "drop_token",
    "drop_user",
    "drop_token_after_commit",
    "drop_user_after_commit",
}
CACHE_MODULE = "portal.tokens.auth_cache"


def offences(path: Path, root: Path = PROJECT_ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        what = None
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            what = name if name in INVALIDATIONS else None
        elif isinstance(node, ast.ImportFrom):
            module, names = node.module or "", {alias.name for alias in node.names}
            if CACHE_MODULE in {module, *(f"{module}.{name}" for name in names)}:
                what = f"import of {CACHE_MODULE}"
            elif names & INVALIDATIONS:
                what = f"import of {sorted(names & INVALIDATIONS)}"
        elif isinstance(node, ast.Import) and any(a.name == CACHE_MODULE for a in node.names):
            what = f"import of {CACHE_MODULE}"
        if what is not None:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {what}")
    return found


def test_no_view_or_command_invalidates_the_auth_cache_itself() -> None:
    found = [
        offence
        for entry_point in ENTRY_POINTS
        for path in sorted((PROJECT_ROOT / entry_point).rglob("*.py"))
        for offence in offences(path)
    ]
    assert not found, "let the service register it on its transaction:\n" + "\n".join(found)


def test_the_check_sees_calls_and_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from portal.tokens import auth_cache\n"
        "from portal.accounts.gateway_cache import invalidate_user\n"
        "import portal.tokens.auth_cache\n"
        "async def f(user):\n"
        "    await auth_cache.invalidate_token(user.token_hash)\n"
        "    await invalidate_user(user.id)\n",
        encoding="utf-8",
    )
    assert sorted(offences(source, tmp_path)) == [
        "m.py:1: import of portal.tokens.auth_cache",
        "m.py:2: import of ['invalidate_user']",
        "m.py:3: import of portal.tokens.auth_cache",
        "m.py:5: invalidate_token",
        "m.py:6: invalidate_user",
    ]

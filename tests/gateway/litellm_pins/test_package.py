"""Only the bridge imports LiteLLM: everything else in gateway_plugins goes through it."""

from __future__ import annotations

import ast

from portal.settings import PROJECT_ROOT


def _imports_litellm(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name == "litellm" or name.startswith("litellm.") for name in names):
            return True
    return False


def test_only_the_bridge_imports_litellm() -> None:
    plugins = PROJECT_ROOT / "gateway_plugins"
    bridge = plugins / "litellm_bridge"
    importers = {
        path.relative_to(plugins).as_posix()
        for path in plugins.rglob("*.py")
        if _imports_litellm(path.read_text(encoding="utf-8"))
    }
    outside = sorted(name for name in importers if not name.startswith("litellm_bridge/"))
    assert outside == []
    assert any(name.startswith("litellm_bridge/") for name in importers)
    assert (bridge / "__init__.py").is_file()

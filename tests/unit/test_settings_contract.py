"""Settings live in one place (issue 10, point 6).

Every variable in `.env.example` is a field of `portal.settings.Settings` or named in
`THIRD_PARTY_VARIABLES` (read by LiteLLM, prometheus_client or compose themselves), and
every field is documented there. No module of the services reads the environment for a
variable of ours: the code is walked with `ast` for `os.environ` / `os.getenv` outside
portal/settings.py, and each read must name a third-party variable or be one of the few
whole-environment uses listed below, with its reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from portal.settings import PROJECT_ROOT, THIRD_PARTY_VARIABLES, environment_variables

PACKAGES = ("portal", "gateway_plugins")
SETTINGS_MODULE = "portal/settings.py"
# (file, function) -> why it may hold the whole environment rather than name a variable.
WHOLE_ENVIRONMENT = {
    ("gateway_plugins/server.py", "prepare_environment"): "sets LiteLLM's variables",
    ("portal/config/deployment.py", "shared_state_warnings"): "PROMETHEUS_MULTIPROC_DIR",
    ("portal/config/deployment.py", "production_problems"): "provider keys (LiteLLM's)",
    ("portal/config/routing.py", "environment_problems"): "config.yaml's os.environ/NAME",
}
_ENVIRON_METHODS = {"get", "setdefault", "pop", "__getitem__", "__contains__"}


@dataclass(frozen=True)
class EnvironmentRead:
    path: str
    line: int
    function: str
    variable: str | None  # None: the whole environment, or a name computed at run time

    def __str__(self) -> str:
        what = self.variable or "os.environ"
        return f"{self.path}:{self.line} ({self.function}) reads {what}"


def environment_reads(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[EnvironmentRead]:
    """Every use of os.environ / os.getenv (or `from os import environ, getenv`)."""
    reads = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative != SETTINGS_MODULE:
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
                reads += _Finder(relative).run(tree)
    return reads


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.function: list[str] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        self.found: list[EnvironmentRead] = []
        self.imported: set[str] = set()  # `from os import environ` -> {"environ"}

    def run(self, tree: ast.AST) -> list[EnvironmentRead]:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.visit(tree)
        return self.found

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function.append(node.name)
        self.generic_visit(node)
        self.function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "os":
            self.imported |= {a.asname or a.name for a in node.names if a.name in _OS_NAMES}

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr == "environ":
                self._record(node, self._environ_variable(node))
            elif node.attr == "getenv":
                self._record(node, self._first_argument(node))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.imported:
            self._record(node, None)

    def _environ_variable(self, node: ast.AST) -> str | None:
        parent = self.parents.get(node)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            return _constant(parent.slice)
        if isinstance(parent, ast.Attribute) and parent.attr in _ENVIRON_METHODS:
            return self._first_argument(parent)
        if isinstance(parent, ast.Compare) and parent.comparators == [node]:
            return _constant(parent.left)  # "NAME" in os.environ
        return None

    def _first_argument(self, func: ast.AST) -> str | None:
        call = self.parents.get(func)
        if isinstance(call, ast.Call) and call.func is func and call.args:
            return _constant(call.args[0])
        return None

    def _record(self, node: ast.AST, variable: str | None) -> None:
        function = self.function[-1] if self.function else "<module>"
        line = getattr(node, "lineno", 0)
        self.found.append(EnvironmentRead(self.path, line, function, variable))


_OS_NAMES = {"environ", "getenv", "environb", "getenvb"}


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def misplaced(reads: list[EnvironmentRead]) -> list[str]:
    """Reads that belong in Settings."""
    wrong = []
    for read in reads:
        if read.variable is not None:
            if read.variable not in THIRD_PARTY_VARIABLES:
                wrong.append(f"{read}: make it a field of portal.settings.Settings")
        elif (read.path, read.function) not in WHOLE_ENVIRONMENT:
            wrong.append(f"{read}: name a third-party variable, or use Settings")
    return wrong


def documented_variables() -> set[str]:
    text = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_no_module_reads_our_variables_from_the_environment() -> None:
    reads = environment_reads(PROJECT_ROOT)
    assert not misplaced(reads), "\n".join(misplaced(reads))
    # the walk does see reads (the allowed ones), so an empty result is not a blind spot
    assert {read.variable for read in reads} >= {"PROMETHEUS_MULTIPROC_DIR"}


def test_the_walk_catches_every_way_of_reading(tmp_path: Path) -> None:
    package = tmp_path / "portal"
    package.mkdir()
    (package / "sneaky.py").write_text(
        "import os\nfrom os import getenv as ge\n"
        "A = os.environ.get('WFG_NEW')\n"
        "def f():\n    return os.environ['SMTP_URL'], os.getenv('METRICS_TOKEN'), ge('X')\n"
        "def g(env=os.environ):\n    return 'LOG_LEVEL' in os.environ\n"
        "OK = os.environ.get('PROMETHEUS_MULTIPROC_DIR')\n"
    )
    (package / "settings.py").write_text("import os\nX = os.environ.get('WFG_VAR_DIR')\n")
    wrong = misplaced(environment_reads(tmp_path, ("portal",)))
    assert [line.split(" reads ")[1].split(":")[0] for line in wrong] == [
        "WFG_NEW",
        "SMTP_URL",
        "METRICS_TOKEN",
        "os.environ",  # ge('X'): a name imported from os
        "os.environ",  # a default argument holding the whole environment
        "LOG_LEVEL",
    ]


def test_every_documented_variable_is_a_setting_or_a_third_partys() -> None:
    ours = set(environment_variables())
    unknown = documented_variables() - ours - set(THIRD_PARTY_VARIABLES)
    assert not unknown, f"not a Settings field nor in THIRD_PARTY_VARIABLES: {sorted(unknown)}"
    assert not ours & set(THIRD_PARTY_VARIABLES)


def test_every_setting_is_documented() -> None:
    missing = set(environment_variables()) - documented_variables()
    assert not missing, f"add to .env.example: {sorted(missing)}"

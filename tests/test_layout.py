"""autograder/'s folders are its parts: each subpackage imports only the layers below it (and itself), never a
command, and says its job in its docstring (autograder/README.md draws the same map)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

AUTOGRADER = Path(__file__).resolve().parent.parent / "autograder"
LAYERS = {"boundary": 0, "checks": 1, "course": 2, "nbgrader_ext": 3}
COMMANDS = 4


def _layer(module: str) -> int:
    """``autograder.checks.registry`` -> 1; a top-level module (a command) -> COMMANDS."""
    parts = module.split(".")
    return LAYERS.get(parts[1], COMMANDS) if len(parts) > 1 else COMMANDS


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(AUTOGRADER.parent).with_suffix("").parts)


def imported_autograder_modules(source: str, module: str) -> set[str]:
    """Every ``autograder...`` module a source imports, at any depth of the code (relative imports resolved)."""
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "autograder" or name.startswith("autograder.")}


def upward_imports(source: str, module: str) -> list[str]:
    """The imports of ``module`` (whose code is ``source``) that reach a layer above its own."""
    own = _layer(module)
    wrong = []
    for target in sorted(imported_autograder_modules(source, module)):
        if target == "autograder" or (own < COMMANDS and _layer(target) > own):
            wrong.append(target)
    return wrong


SUBPACKAGE_MODULES = sorted(p for p in AUTOGRADER.glob("*/*.py") if p.parent.name in LAYERS)


def test_every_module_sits_in_a_known_layer():
    assert {p.parent.name for p in AUTOGRADER.glob("*/__init__.py")} == set(LAYERS)
    assert len(SUBPACKAGE_MODULES) > 20


@pytest.mark.parametrize("path", SUBPACKAGE_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_module_imports_upward(path: Path):
    assert upward_imports(path.read_text(), _module_name(path)) == [], f"{path} imports a layer above its own"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_subpackage_says_its_job(package: str):
    doc = ast.get_docstring(ast.parse((AUTOGRADER / package / "__init__.py").read_text()))
    assert doc and 1 <= len(doc.splitlines()) <= 3, package


def test_the_check_sees_an_upward_import():
    """The layer test itself: a boundary module importing a check, or any part importing a command, is caught;
    the same imports downward pass."""
    assert imported_autograder_modules("from ..checks import registry\n", "autograder.boundary.host") == {
        "autograder.checks", "autograder.checks.registry"}
    for source in ("from autograder.checks.registry import CHECKS\n", "def f():\n    from autograder import grade\n",
                   "from ..course import jobs\n", "import autograder.nbgrader_ext.app\n"):
        assert upward_imports(source, "autograder.boundary.host"), source
    assert upward_imports("from autograder.checks.registry import CHECKS\nfrom ..boundary import host\n",
                          "autograder.course.jobs") == []
    assert upward_imports("from autograder.grade import grade\n", "autograder.demo") == []

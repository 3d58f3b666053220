"""The package's shape (ARCHITECTURE.md): files of one job, short functions, no module importing its own package.

The layers and the import contracts are checked by ``lint-imports`` (``pyproject.toml``);
these are the limits it does not express.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[2] / "physicsml"
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60


def library_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_library_file_is_longer_than_the_limit():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in library_files()
        if (n := len(path.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert long == {}


def test_no_library_function_is_longer_than_the_limit():
    long = {}
    for path in library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"] = length
    assert long == {}


def test_no_module_imports_a_package_that_contains_it():
    """A submodule importing its package's ``__init__`` (which imports the submodule) is a circle that
    only import order hides."""
    graph = grimp.build_graph("physicsml")
    upward = sorted(
        f"{module} -> {imported}"
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if module.startswith(imported + ".")
    )
    assert upward == []

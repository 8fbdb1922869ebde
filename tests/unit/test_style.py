"""The shape the code keeps: small functions and files, dependencies pointing inward (the domain
knows no I/O, the use cases know only ports), and no ``assert`` or ``print`` in the app."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 50
MAX_FILE_LINES = 400
# What each layer of shared/ may import, beside the standard library and shared.errors/settings.
FORBIDDEN = {
    "shared/domain": (
        "requests",
        "azure",
        "shared.adapters",
        "shared.usecases",
        "shared.app",
        "shared.bootstrap",
    ),
    "shared/usecases": ("requests", "azure", "shared.adapters", "shared.app", "shared.bootstrap"),
    "shared/ports.py": ("requests", "azure", "shared.adapters", "shared.usecases"),
}


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


@pytest.mark.parametrize(
    "path", list(python_files("shared", "bench")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_functions_stay_short(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for f in functions(tree)
        if f.end_lineno is not None and f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(ROOT)}: {long}"


@pytest.mark.parametrize("path", list(python_files("shared")), ids=lambda p: str(p.relative_to(ROOT)))
def test_app_files_stay_readable_in_a_sitting(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_FILE_LINES


def imported_modules(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_inward(layer: str) -> None:
    paths = [ROOT / layer] if layer.endswith(".py") else list(python_files(layer))
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in paths
        for module in imported_modules(path)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert not wrong, wrong


def test_no_assert_or_print_in_the_app() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in python_files("shared", "isolate_fn", "release_fn")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert)
        or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print")
    ]
    assert not found, found  # assert is stripped under python -O; logging, not print

"""Size limits ruff cannot check: no function in ``src/`` longer than 60 lines (docstring
included), no module longer than 350. Small units keep each module one job that a reader
can hold in mind; ``pyproject.toml`` adds ruff's complexity and argument-count rules."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 350


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_no_module_is_too_long() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_too_long() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(SRC)}::{node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"

"""Params for tests: the project's ``params.yaml`` with a test's changes, validated as the
stages validate it. Sections have no defaults of their own (``params.yaml`` is the one
place values live), so a test states only what it changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medran.params import Params, deep_merge, parse_params, read_yaml

ROOT = Path(__file__).resolve().parents[1]


def project_params(**sections: Any) -> Params:
    """``params.yaml`` with ``sections`` deep-merged over it: ``project_params(pretrain={"epochs":
    2})``."""
    return parse_params(deep_merge(read_yaml(ROOT / "params.yaml"), sections))


def section(name: str, **changes: Any) -> Any:
    """One section of :func:`project_params`: ``section("pretrain", epochs=2)``."""
    return getattr(project_params(**{name: changes}), name)

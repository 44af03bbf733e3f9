"""dvc.yaml, params.yaml, the stage scripts and the library agree with each other.

These checks keep DVC's dependency lists honest: a stage must rerun when code it uses
changes (so every medran module it imports is a dep) and must not rerun for unrelated
changes (so it declares only its own params).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from medran.params import parse_params
from tests.pipeline.conftest import ROOT, ci_params

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]
# Modules every stage uses that cannot change a stage's output: the package root, error
# types, params parsing (params values are tracked by DVC itself), the runner and launcher,
# and MLflow logging.
INFRASTRUCTURE = {
    "medran",
    "medran.errors",
    "medran.data.errors",
    "medran.params",
    "medran.runner",
    "medran.launch",
    "medran.tracking",
}


def _module_file(module: str) -> Path | None:
    base = ROOT / "src" / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "medran" and _module_file(name)}


def medran_closure(module: str) -> set[str]:
    """Every medran module ``module`` imports, transitively (static, including lazy imports)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen or current in INFRASTRUCTURE:
            continue
        seen.add(current)
        todo.extend(_imports(_module_file(current)))
    return seen


def _has_code(path: Path) -> bool:
    """False for a package ``__init__`` that holds only its docstring."""
    body = ast.parse(path.read_text()).body
    return not all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT)
    return any(relative == Path(d) or Path(d) in relative.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_has_script_module_and_params_section(stage: str) -> None:
    spec = STAGES[stage].get("do", STAGES[stage])
    assert (ROOT / "stages" / f"{stage}.py").is_file()
    assert (ROOT / "src" / "medran" / "pipeline" / f"{stage}.py").is_file()
    assert f"stages/{stage}.py" in spec["deps"]
    assert f"src/medran/pipeline/{stage}.py" in spec["deps"]
    assert f"python stages/{stage}.py" in spec["cmd"]
    own = [p for p in spec.get("params", []) if p == stage or str(p).startswith(f"{stage}.")]
    if stage in yaml.safe_load((ROOT / "params.yaml").read_text()):
        assert own, f"stage {stage} does not declare its own params section"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_imports(stage: str) -> None:
    spec = STAGES[stage].get("do", STAGES[stage])
    deps = [d for d in spec["deps"] if "${" not in d]
    modules = medran_closure(f"medran.pipeline.{stage}")
    files = [_module_file(m) for m in modules]
    missing = sorted(
        str(f.relative_to(ROOT)) for f in files if _has_code(f) and not _covered(f, deps)
    )
    assert not missing, f"dvc.yaml stage {stage} uses code it does not list as deps: {missing}"


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_params_yaml_spells_out_every_value() -> None:
    """Defaults hidden in code would change results without DVC noticing."""
    raw = _flat(yaml.safe_load((ROOT / "params.yaml").read_text()))
    effective = _flat(parse_params(yaml.safe_load((ROOT / "params.yaml").read_text())).model_dump())
    hidden = {k: v for k, v in effective.items() if k not in raw}
    assert not hidden, f"params.yaml lacks keys the code reads (defaults shown): {hidden}"


def test_ci_overrides_are_valid_params() -> None:
    overrides = yaml.safe_load((ROOT / "configs" / "ci.yaml").read_text())
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())

    unknown = set(_flat(overrides)) - set(_flat(raw))
    assert not unknown, f"configs/ci.yaml overrides keys params.yaml lacks: {sorted(unknown)}"
    parse_params(ci_params())

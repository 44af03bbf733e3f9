"""dvc.yaml, params.yaml, the stage scripts and the library agree with each other.

These checks keep DVC's dependency lists honest: a stage must rerun when code it uses
changes (so every medran module it imports is a dep) and must not rerun for unrelated
changes (so it declares only its own params).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from medran import contracts, names
from medran.params import parse_params
from tests.pipeline.conftest import ROOT, ci_params, make_repo

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC["stages"]
# Modules every stage uses that cannot change a stage's output: the package root, error
# types, params parsing (params values are tracked by DVC itself; the package and its
# section modules), the runner and launcher, and MLflow logging.
INFRASTRUCTURE = {
    "medran",
    "medran.errors",
    "medran.data.errors",
    "medran.params",
    "medran.runner",
    "medran.launch",
    "medran.tracking",
    "medran.lineage",  # the digests runs are tagged with
    "medran.startup",  # start-up timing marks, printed only for the benchmark
    "medran.progress",  # progress bars on a terminal
}


def _infrastructure(module: str) -> bool:
    return module in INFRASTRUCTURE or module.startswith("medran.params.")


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
        if current in seen or _infrastructure(current):
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


# --- the contracts (medran.names, medran.contracts) against dvc.yaml and params.yaml --------

PARAMS_YAML = yaml.safe_load((ROOT / "params.yaml").read_text())
# A sample item, substituted for dvc.yaml's ${...} to compare its paths with the contracts'.
SAMPLE = {"${item}": "0.5", "${item.level}": "0.5", "${item.task}": "vqa"}
SAMPLE |= {"${item.method}": "ran", "${key}": "clean"}


def _resolve(text: str) -> str:
    for template, value in SAMPLE.items():
        text = text.replace(template, value)
    return text


def _metrics(spec: dict) -> list[str]:
    return [_resolve(next(iter(m)) if isinstance(m, dict) else m) for m in spec.get("metrics", [])]


def test_dvc_stages_are_the_contracts_stages() -> None:
    assert set(STAGES) == set(contracts.STAGES)


def test_every_task_and_method_has_its_params_section() -> None:
    """``dvc.yaml`` makes each finetune stage depend on ``finetune.<task>`` and
    ``finetune.<method>``: every name needs its section, and nothing else is a section."""
    finetune = PARAMS_YAML["finetune"]
    assert set(names.TASKS) | set(names.METHODS) <= set(finetune)
    assert set(finetune["tasks"]) <= set(names.TASKS)
    assert set(finetune["methods"]) <= set(names.METHODS)
    assert STAGES["finetune"]["matrix"] == {
        "level": "${noise_levels}",
        "task": "${finetune.tasks}",
        "method": "${finetune.methods}",
    }


def test_gates_are_the_contracts_gates() -> None:
    assert tuple(STAGES["validate_data"]["foreach"]) == names.GATES
    assert STAGES["validate_noisy"]["foreach"] == "${noise_levels}"
    noisy = STAGES["validate_noisy"]["do"]
    assert _metrics(noisy) == [str(contracts.gate_result_path(names.NOISY_GATE, 0.5))]
    for gate in names.GATES:
        path = contracts.gate_result_path(gate)
        assert _metrics(STAGES["validate_data"]["do"]) == [str(path).replace(gate, "clean")]
    # The report reads every gate's result: the folder they all write under.
    assert str(contracts.gate_result_path("clean").parents[1]) in STAGES["report"]["deps"]


def _ancestors(edges: set[tuple[str, str]], stage: str) -> set[str]:
    parents = {a for a, b in edges if b == stage}
    return parents.union(*(_ancestors(edges, p) for p in parents))


def test_every_consumer_runs_after_its_gate(tmp_path: Path) -> None:
    """In the real DAG (``dvc dag``), each gate is an ancestor of the stages reading its data,
    so ``dvc repro <consumer>`` runs the gate first and stops where it fails."""
    repo = make_repo(tmp_path / "repo")
    dot = repo.run("dvc", "dag", "--dot").stdout
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    consumers = {
        contracts.gate_id("clean"): ["train_surrogate", "attack_images"],
        contracts.gate_id("adversarial"): [],
    }
    levels = ci_params()["noise_levels"]
    for level in levels:
        consumers[contracts.gate_id("adversarial")].append(contracts.stage_id("build_noisy", level))
        noisy = contracts.gate_id(names.NOISY_GATE, level)
        consumers[noisy] = [contracts.stage_id("pretrain", level)]
    for gate, stages in consumers.items():
        for stage in stages:
            assert gate in _ancestors(edges, stage), f"{gate} does not run before {stage}"
    # A level's gate is its own: no other level's pre-training waits for it.
    for level in levels:
        noisy = contracts.gate_id(names.NOISY_GATE, level)
        others = [contracts.stage_id("pretrain", p) for p in levels if p != level]
        assert not any(noisy in _ancestors(edges, stage) for stage in others)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_command_is_its_paths_contract(stage: str) -> None:
    """The flags a stage is given are its paths object's fields, its positionals its keys."""
    spec = STAGES[stage].get("do", STAGES[stage])
    words = spec["cmd"].split()
    script = words.index(f"stages/{stage}.py")
    first_flag = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
    positionals = words[script + 1 : first_flag]
    assert len(positionals) == len(contracts.STAGE_KEYS.get(stage, ()))
    flags = {w[2:] for w in words if w.startswith("--")}
    fields = dataclasses.fields(contracts.STAGE_PATHS[stage])
    required = {f.name for f in fields if f.default is dataclasses.MISSING}
    assert required <= flags <= {f.name for f in fields}


@pytest.mark.parametrize("stage", ["pretrain", "eval_upstream", "finetune", "eval_robust"])
def test_metrics_paths_are_the_contracts(stage: str) -> None:
    spec = STAGES[stage].get("do", STAGES[stage])
    keys = contracts.STAGE_KEYS[stage]
    item = {"level": 0.5, "task": "vqa", "method": "ran"}
    expected = contracts.metrics_path(stage, **{k: item[k] for k in keys})
    assert _metrics(spec) == [str(expected)]
    assert f"--metrics {expected}" in _resolve(" ".join(spec["cmd"].split()))


def test_report_reads_the_stages_metrics_where_they_write_them() -> None:
    """The report's deps are the folders the per-level stages write their metrics under."""
    deps = STAGES["report"]["deps"]
    for stage in ("pretrain", "eval_upstream", "finetune", "eval_robust"):
        assert str(contracts.REPORTS / stage) in deps

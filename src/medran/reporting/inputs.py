"""What the report reads: the metrics JSON of every stage, checked against what params.yaml
says should exist.

Paths mirror ``dvc.yaml`` (``reports/<stage>/<level>/...``). Each expected file belongs to
the DVC stage that writes it, so a missing or unreadable file, or one that lacks a value the
report needs, is recorded as a :class:`Problem` named after that stage
(``finetune@0.5-vqa-ran``). Nothing here raises on bad metrics: the report shows a dash and
``report.strict`` decides whether the problems fail the stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medran.layout import level_name
from medran.params import Params


@dataclass(frozen=True)
class Expected:
    """What the pipeline was configured to produce (params.yaml) and the gates it runs."""

    levels: tuple[float, ...]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    eps: tuple[float, ...]  # eval_robust budgets, 1/255 units
    recall_at: tuple[int, ...]
    gates: tuple[str, ...]

    @classmethod
    def from_params(cls, params: Params, gates: tuple[str, ...]) -> Expected:
        return cls(
            levels=tuple(params.noise_levels),
            tasks=tuple(params.finetune.tasks),
            methods=tuple(params.finetune.methods),
            seeds=tuple(params.finetune.seeds),
            eps=tuple(params.eval_robust.eps),
            recall_at=tuple(params.eval_upstream.recall_at),
            gates=tuple(gates),
        )

    @property
    def level_names(self) -> list[str]:
        return [level_name(level) for level in self.levels]

    @property
    def largest_eps(self) -> float:
        return max(self.eps)

    def stages(self) -> set[str]:
        """The DVC stages (and MLflow run names) whose results the report shows."""
        names = {"attack_images"}
        for level in self.level_names:
            names |= {f"pretrain@{level}", f"eval_upstream@{level}", f"eval_robust@{level}"}
            names |= {f"finetune@{level}-{t}-{m}" for t in self.tasks for m in self.methods}
        return names


@dataclass(frozen=True, order=True)
class Problem:
    """A result the report could not show: the stage that should have made it, and why."""

    stage: str
    detail: str


@dataclass
class Inputs:
    """Every metrics mapping that could be read; absent keys are missing files."""

    pretrain: dict[str, dict[str, Any]] = field(default_factory=dict)  # level -> metrics
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)  # level -> metrics
    finetune: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    robust: dict[str, dict[str, Any]] = field(default_factory=dict)  # level -> metrics
    attack: dict[str, Any] | None = None
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def robust_key(eps: float) -> str:
    """The name ``medran.evaluation.robust.RobustReport.as_metrics`` gives robust accuracy."""
    return f"robust_accuracy_eps{eps:g}"


def read_inputs(reports: Path, expected: Expected) -> Inputs:
    """Read every expected metrics file under the reports root (``reports/``)."""
    reports = Path(reports)
    found = Inputs()
    problems = found.problems

    def read(stage: str, path: Path, needed: list[str]) -> dict[str, Any] | None:
        metrics, problem = read_metrics(path, needed)
        if problem:
            problems.append(Problem(stage, problem))
        return metrics

    recalls = [f"{d}_r{k}" for k in expected.recall_at for d in ("i2t", "t2i")]
    per_level = (  # stage, where its metrics go, the keys the report shows
        ("pretrain", found.pretrain, ["final_loss"]),
        ("eval_upstream", found.upstream, [*recalls, "zero_shot_accuracy"]),
    )
    for level in expected.level_names:
        for stage, into, needed in per_level:
            metrics = read(f"{stage}@{level}", reports / stage / level / "metrics.json", needed)
            if metrics is not None:
                into[level] = metrics
        for task in expected.tasks:
            for method in expected.methods:
                stage = f"finetune@{level}-{task}-{method}"
                path = reports / "finetune" / level / f"{task}-{method}" / "metrics.json"
                metrics = read(stage, path, ["test.accuracy"])
                if metrics is not None:
                    found.finetune[(level, task, method)] = metrics
        robust = read(f"eval_robust@{level}", reports / "eval_robust" / level / "metrics.json", [])
        if robust is not None:
            found.robust[level] = robust
            problems.extend(_robust_gaps(level, robust, expected))
    found.attack = read("attack_images", reports / "attack_images" / "metrics.json", [])
    for gate in expected.gates:
        path = reports / "data_quality" / gate / "result.json"
        result = read(f"validate_data@{gate}", path, ["success"])
        if result is not None:
            found.gates[gate] = result
    return found


def read_metrics(path: Path, needed: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """(the mapping in ``path``, or None) and what is wrong with it, if anything."""
    if not path.is_file():
        return None, f"no metrics file {path}"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable metrics file {path}: {e}"
    if not isinstance(metrics, dict):
        return None, f"{path} holds a {type(metrics).__name__}, not a mapping of metrics"
    lacking = [key for key in needed if key not in metrics]
    if lacking:
        return metrics, f"{path} lacks {lacking}"
    return metrics, None


def _robust_gaps(level: str, metrics: dict[str, Any], expected: Expected) -> list[Problem]:
    """One problem per model whose clean or robust accuracy is not in the level's file."""
    problems = []
    wanted = ["clean_accuracy", *(robust_key(e) for e in expected.eps)]
    for task in expected.tasks:
        for method in expected.methods:
            lacking = [k for k in wanted if f"{task}.{method}.{k}" not in metrics]
            if lacking:
                detail = f"no {', '.join(lacking)} for {task}-{method}"
                problems.append(Problem(f"eval_robust@{level}", detail))
    return problems


def read_benchmarks(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The run-budget file written around a whole pipeline run, if there is one: (its
    content, or None) and why it could not be used. Its absence is not a problem."""
    if path is None or not Path(path).is_file():
        return None, None
    return read_metrics(Path(path), [])

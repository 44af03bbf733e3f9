"""What the report reads: the metrics JSON of every stage, checked against what params.yaml
says should exist.

Paths and stage names come from ``medran.contracts``, as ``dvc.yaml`` spells them
(``reports/<stage>/<level>/...``). Each expected file belongs to the DVC stage that writes it,
so a missing or unreadable file, or one that lacks a value the report needs, is recorded as a
:class:`Problem` named after that stage (``finetune@0.5-vqa-ran``). Nothing here raises on
bad metrics: the report shows a dash and ``report.strict`` decides whether the problems fail
the stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medran.contracts import (
    CLEAN_ACCURACY,
    FINAL_LOSS,
    TEST_ACCURACY,
    ZERO_SHOT_ACCURACY,
    gate_id,
    gate_result_path,
    gates,
    metrics_path,
    model_key,
    recall_key,
    robust_accuracy_key,
    stage_id,
)
from medran.layout import level_name
from medran.params import Params

if TYPE_CHECKING:
    import numpy as np

    from medran.reporting.outcomes import ModelOutcomes


@dataclass(frozen=True)
class Expected:
    """What the pipeline was configured to produce (params.yaml) and the gates it runs."""

    levels: tuple[float, ...]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    eps: tuple[float, ...]  # eval_robust budgets, 1/255 units
    recall_at: tuple[int, ...]
    gates: tuple[tuple[str, float | None], ...]  # (gate, level): contracts.gates
    protocol: str  # the robust evaluation's preset, in words
    calibration_level: float
    calibration_examples: int
    max_gap: float  # a larger calibration gap is flagged

    @classmethod
    def from_params(cls, params: Params) -> Expected:
        robust, calibration = params.eval_robust, params.calibrate_robust
        return cls(
            levels=tuple(params.noise_levels),
            tasks=tuple(params.finetune.tasks),
            methods=tuple(params.finetune.methods),
            seeds=tuple(params.finetune.seeds),
            eps=tuple(robust.eps),
            recall_at=tuple(params.eval_upstream.recall_at),
            gates=tuple(gates(params.noise_levels)),
            protocol=robust.protocol.describe(robust.preset),
            calibration_level=calibration.level,
            calibration_examples=calibration.examples,
            max_gap=calibration.max_gap,
        )

    @property
    def level_names(self) -> list[str]:
        return [level_name(level) for level in self.levels]

    @property
    def largest_eps(self) -> float:
        return max(self.eps)

    def stages(self) -> set[str]:
        """The DVC stages (and MLflow run names) whose results the report shows."""
        found = {"attack_images", "calibrate_robust"}
        for level in self.levels:
            found |= {stage_id(s, level) for s in ("pretrain", "eval_upstream", "eval_robust")}
            found |= {stage_id("finetune", level, t, m) for t in self.tasks for m in self.methods}
        return found


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
    calibration: dict[str, Any] | None = None  # calibrate_robust's metrics
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # gate's stage -> result
    problems: list[Problem] = field(default_factory=list)
    # Per-example outcomes (medran.reporting.outcomes): per (level, task, method), and per
    # task the trivial baseline's.
    outcomes: dict[tuple[str, str, str], ModelOutcomes] = field(default_factory=dict)
    priors: dict[str, np.ndarray] = field(default_factory=dict)


def read_inputs(reports: Path, expected: Expected) -> Inputs:
    """Read every expected metrics file under the reports root (``reports/``)."""
    found = Inputs()
    reader = _Reader(Path(reports), found.problems)
    recalls = [recall_key(d, k) for k in expected.recall_at for d in ("i2t", "t2i")]
    for level in expected.levels:
        _read_level(reader, found, expected, level, recalls)
    found.attack = reader.read("attack_images", [])
    found.calibration = reader.read("calibrate_robust", [])
    for gate, level in expected.gates:
        stage = gate_id(gate, level)
        result = reader.read_file(stage, gate_result_path(gate, level, reader.reports), ["success"])
        if result is not None:
            found.gates[stage] = result
    return found


@dataclass(frozen=True)
class _Reader:
    """Reads metrics files, recording each fault as a problem of the stage that writes it."""

    reports: Path
    problems: list[Problem]

    def read(
        self,
        stage: str,
        needed: list[str],
        level: float | None = None,
        task: str | None = None,
        method: str | None = None,
    ) -> dict[str, Any] | None:
        """The metrics of ``stage`` (of ``level``, ``task``, ``method``), where ``dvc.yaml``
        puts them."""
        path = metrics_path(stage, level, task, method, reports=self.reports)
        return self.read_file(stage_id(stage, level, task, method), path, needed)

    def read_file(self, stage: str, path: Path, needed: list[str]) -> dict[str, Any] | None:
        metrics, problem = read_metrics(path, needed)
        if problem:
            self.problems.append(Problem(stage, problem))
        return metrics


def _read_level(
    reader: _Reader, found: Inputs, expected: Expected, level: float, recalls: list[str]
) -> None:
    """One level's pretrain, eval_upstream, finetune (every model) and eval_robust metrics."""
    name = level_name(level)
    per_level = (  # stage, where its metrics go, the keys the report shows
        ("pretrain", found.pretrain, [FINAL_LOSS]),
        ("eval_upstream", found.upstream, [*recalls, ZERO_SHOT_ACCURACY]),
    )
    for stage, into, needed in per_level:
        metrics = reader.read(stage, needed, level)
        if metrics is not None:
            into[name] = metrics
    for task in expected.tasks:
        for method in expected.methods:
            metrics = reader.read("finetune", [TEST_ACCURACY], level, task, method)
            if metrics is not None:
                found.finetune[(name, task, method)] = metrics
    robust = reader.read("eval_robust", [], level)
    if robust is not None:
        found.robust[name] = robust
        reader.problems.extend(_robust_gaps(level, robust, expected))


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


def _robust_gaps(level: float, metrics: dict[str, Any], expected: Expected) -> list[Problem]:
    """One problem per model whose clean or robust accuracy is not in the level's file."""
    problems = []
    wanted = [CLEAN_ACCURACY, *(robust_accuracy_key(e) for e in expected.eps)]
    for task in expected.tasks:
        for method in expected.methods:
            lacking = [k for k in wanted if model_key(task, method, k) not in metrics]
            if lacking:
                detail = f"no {', '.join(lacking)} for {task}-{method}"
                problems.append(Problem(stage_id("eval_robust", level), detail))
    return problems


def read_benchmarks(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The run-budget file written around a whole pipeline run, if there is one: (its
    content, or None) and why it could not be used. Its absence is not a problem."""
    if path is None or not Path(path).is_file():
        return None, None
    return read_metrics(Path(path), [])

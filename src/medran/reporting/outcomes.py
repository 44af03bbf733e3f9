"""Per-example outcomes of every fine-tuned model, the input of every confidence interval and
claim in the report.

``finetune`` writes one ``outcomes.npz`` per model: (seeds, test examples) arrays ``correct``
(0/1), ``blind`` (right with another example's image), ``label_accuracy`` (multi-label
cls), ``scores`` (cls, plus a last axis of classes) and, per test example, ``truth`` (cls),
``prior`` (the trivial baseline right, 0/1) and ``rows`` (ids). ``eval_robust`` writes one per
level: per model, (seeds, attacked examples) arrays under the keys of its metrics
(``cls.ran.robust_accuracy_eps4``), and per task the attacked ``<task>.rows``.

Example sets are named ``<task>/test`` and ``<task>/attacked``: every model of a task is
scored on the same examples, so comparisons are paired.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medran.contracts import (
    BLIND_ACCURACY,
    CLEAN_ACCURACY,
    model_key,
    outcomes_path,
    robust_accuracy_key,
    stage_id,
)
from medran.layout import level_name
from medran.reporting.inputs import Expected, Problem

Model = tuple[str, str, str]  # (level name, task, method)


def test_set(task: str) -> str:
    return f"{task}/test"


def attacked_set(task: str) -> str:
    return f"{task}/attacked"


@dataclass(frozen=True)
class ModelOutcomes:
    """One model, every seed. Arrays are (seeds, examples), 1.0 where the model is right."""

    task: str
    clean: np.ndarray  # the whole test split (finetune)
    attacked_clean: np.ndarray | None  # the attacked subset, clean images (eval_robust)
    robust: dict[float, np.ndarray]  # eps (1/255) -> right on the clean and the attacked image
    blind: np.ndarray | None  # right on clean and with another example's image (attacked subset)
    test_blind: np.ndarray | None = None  # right with another example's image, whole test split
    label_accuracy: np.ndarray | None = None  # multi-label cls: fraction of labels right
    scores: np.ndarray | None = None  # cls: (seeds, examples, classes) probabilities
    truth: np.ndarray | None = None  # cls: (examples, classes) 0/1 labels


def read_outcomes(
    reports: Path, expected: Expected, problems: list[Problem]
) -> tuple[dict[Model, ModelOutcomes], dict[str, np.ndarray]]:
    """Every expected model's outcomes that could be read, and per task the trivial
    baseline's (from the first model that has it). A missing or faulty file is a problem of
    the stage that writes it, never an error."""
    found: dict[Model, ModelOutcomes] = {}
    priors: dict[str, np.ndarray] = {}
    for level in expected.levels:
        robust = _load(reports, "eval_robust", problems, level)
        for task in expected.tasks:
            for method in expected.methods:
                clean = _load(reports, "finetune", problems, level, task, method)
                if clean is None:
                    continue
                priors.setdefault(task, clean["prior"])
                model = _model(task, method, clean, robust, expected.eps)
                found[(level_name(level), task, method)] = model
    return found, priors


def _model(
    task: str,
    method: str,
    clean: dict[str, np.ndarray],
    robust: dict[str, np.ndarray] | None,
    eps: tuple[float, ...],
) -> ModelOutcomes:
    def attacked(name: str) -> np.ndarray | None:
        return None if robust is None else robust.get(model_key(task, method, name))

    by_eps = {e: attacked(robust_accuracy_key(e)) for e in eps}
    return ModelOutcomes(
        task=task,
        clean=clean["correct"],
        attacked_clean=attacked(CLEAN_ACCURACY),
        robust={e: v for e, v in by_eps.items() if v is not None},
        blind=attacked(BLIND_ACCURACY),
        test_blind=clean.get("blind"),
        label_accuracy=clean.get("label_accuracy"),
        scores=clean.get("scores"),
        truth=clean.get("truth"),
    )


def _load(
    reports: Path,
    stage: str,
    problems: list[Problem],
    level: float,
    task: str | None = None,
    method: str | None = None,
) -> dict[str, np.ndarray] | None:
    path = outcomes_path(stage, level, task, method, reports)
    try:
        with np.load(path) as arrays:
            return {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        problems.append(Problem(stage_id(stage, level, task, method), f"no outcomes {path}: {e}"))
        return None

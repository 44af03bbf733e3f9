"""``calibrate_robust``: how much the evaluation's preset overestimates robust accuracy.

The embedded run evaluates every model with a preset its CPUs afford (``eval_robust.preset``).
This stage evaluates, for the first seed of every task x method at ``calibrate_robust.level``,
the first ``examples`` of the rows that preset attacks under both it and the full preset (the
field's standard: docs/study.md, "Robust protocol"), and reports the gap per eps: the preset's
robust accuracy minus the full one's. The report flags a gap above ``max_gap``. With the full
preset in use there is nothing to calibrate, and the stage says so.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from medran.contracts import CalibrateRobustPaths, item_folder, model_key, robust_accuracy_key
from medran.models.finetuned import read_config, seed_dir
from medran.names import FULL_PRESET
from medran.params import Params
from medran.pipeline.eval_robust import Level, evaluate_logged, examples, load_level, load_tasks
from medran.progress import bar

log = logging.getLogger(__name__)
GAP = "max_gap"  # the largest gap over models and eps
OVERESTIMATES = "overestimates"  # 1.0 when that gap exceeds calibrate_robust.max_gap


def run(params: Params, *, paths: CalibrateRobustPaths) -> dict[str, float]:
    section, evaluation = params.calibrate_robust, params.eval_robust
    if evaluation.preset == FULL_PRESET:
        log.info("eval_robust already uses the full preset: nothing to calibrate")
        return {"n_models": 0.0}
    tasks, methods, seed = params.finetune.tasks, params.finetune.methods, params.finetune.seeds[0]
    folders = {
        (t, m): seed_dir(paths.finetune / item_folder(t, m), seed) for t in tasks for m in methods
    }
    configs = {(t, m, seed): read_config(folder) for (t, m), folder in folders.items()}
    cheap = load_level(params, section.level, paths.data, paths.pretrain)
    # The evaluation's budgets only: large_eps serves the masking checks, not the comparison.
    cheap.params = evaluation.model_copy(update={"large_eps": max(evaluation.eps)})
    cheap.stage = "calibrate_robust"
    full = dataclasses.replace(cheap, preset_name=FULL_PRESET)
    metrics: dict[str, float] = {}
    loaded = load_tasks(full, tasks, configs, paths.finetune)
    for task_name, method in bar(list(folders), desc="calibrate_robust", unit="model"):
        task, test = loaded[task_name]
        rows = examples(len(test), cheap.preset.max_examples, evaluation.seed)[: section.examples]
        gaps = compare(
            cheap, full, (folders[(task_name, method)], task, test, rows), evaluation.eps
        )
        metrics |= {model_key(task_name, method, k): v for k, v in gaps.items()}
    gaps = [v for k, v in metrics.items() if k.endswith(".gap_max")]
    metrics[GAP] = max(gaps)
    metrics[OVERESTIMATES] = float(metrics[GAP] > section.max_gap)
    metrics["n_models"] = float(len(folders))
    metrics["examples"] = float(section.examples)
    return metrics


def compare(cheap: Level, full: Level, job: tuple, eps: list[float]) -> dict[str, float]:
    """Robust accuracy per eps under the evaluation's preset (``preset.``) and the full one
    (``full.``), and the gap between them (``gap.``)."""
    folder, task, test, rows = job
    out: dict[str, float] = {}
    for name, ctx in (("preset", cheap), (FULL_PRESET, full)):
        result, _ = evaluate_logged(ctx, Path(folder), task, test, rows)
        out |= {f"{name}.{robust_accuracy_key(e)}": result[robust_accuracy_key(e)] for e in eps}
        out[f"{name}.wall_time_s"] = result["wall_time_s"]
    for e in eps:
        key = robust_accuracy_key(e)
        out[f"gap.{key}"] = out[f"preset.{key}"] - out[f"{FULL_PRESET}.{key}"]
    out["gap_max"] = max(out[f"gap.{robust_accuracy_key(e)}"] for e in eps)
    return out

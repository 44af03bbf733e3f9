"""``eval_robust@<level>``: white-box PGD against every fine-tuned model of one noise level.

One stage per level (DESIGN §2: start-up is not free, and the models of a level share their
pre-trained encoder and test images), one MLflow run per evaluated model, tagged with the
finetune run it evaluates. Each model is rebuilt from its folder (``config.json`` +
``trainable.safetensors``) on the level's pre-trained CLIP and attacked as a whole (encoder +
rectifier + head) by L-inf PGD with random starts at every eps, on at most ``max_examples``
test rows (a seeded subset, the same for every model). For VQA the question is fixed and
the attack maximises the answer loss. The gradient-masking checks of
``medran.evaluation.robust`` are reported as flags.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from medran import layout
from medran.errors import InputError
from medran.evaluation.robust import robust_metrics
from medran.methods import METHODS
from medran.methods.checkpoint import load_finetuned, read_config, read_run_id, seed_dir
from medran.models.factory import ClipModel, load_local_dir
from medran.params import EvalRobustParams, ParamsError, check_choices
from medran.tasks import TASKS, Split, Task, make_task
from medran.tracking import stage_run

log = logging.getLogger(__name__)


def model_dir(finetune_root: Path, task: str, method: str) -> Path:
    """The output folder of ``finetune@<level>-<task>-<method>`` inside the level's folder."""
    return Path(finetune_root) / f"{task}-{method}"


@dataclasses.dataclass
class Level:
    """What every evaluated model of one level shares."""

    params: EvalRobustParams
    name: str  # the level's folder and stage key
    clip: ClipModel
    device: str
    inputs: dict[str, Path]  # declared to MLflow (plus each model's own folder)
    experiment: str


def run(
    params: EvalRobustParams,
    level: float,
    data_root: Path,
    pretrain_dir: Path,
    finetune_root: Path,
    experiment: str,
    tasks: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
) -> dict[str, float]:
    check_choices("task", tasks, TASKS)
    check_choices("method", methods, METHODS)
    if not seeds:
        raise ParamsError("no seeds to evaluate: finetune.seeds is empty")
    folders = {
        (t, m, s): seed_dir(model_dir(finetune_root, t, m), s)
        for t in tasks
        for m in methods
        for s in seeds
    }
    configs = {key: read_config(folder) for key, folder in folders.items()}  # all, before work
    device = "cuda" if params.device == "auto" and torch.cuda.is_available() else "cpu"
    clip = load_local_dir(pretrain_dir)
    clip.model.to(device)
    prepared = data_root / layout.PREPARED
    inputs = {"prepared": prepared, "pretrain": pretrain_dir}
    ctx = Level(params, layout.level_name(level), clip, device, inputs, experiment)

    metrics: dict[str, float] = {}
    for task_name in tasks:
        options = {json.dumps(c["task_options"]) for k, c in configs.items() if k[0] == task_name}
        if len(options) > 1:
            raise InputError(
                f"the {task_name} models in {finetune_root} were trained with different task "
                f"options {sorted(options)}; rerun their finetune stages"
            )
        task = make_task(task_name, prepared, **json.loads(options.pop()))
        test = task.with_context(task.load_split("test", clip.image_size), clip)
        rows = examples(len(test), params.max_examples, params.seed)
        for method in methods:
            per_seed = {
                seed: evaluate_logged(ctx, folders[(task_name, method, seed)], task, test, rows)
                for seed in seeds
            }
            metrics |= summarize(f"{task_name}.{method}", per_seed)
    flags = [v for k, v in metrics.items() if k.endswith(".gradient_masking_suspected")]
    metrics["gradient_masking_suspected"] = float(max(flags))
    metrics["n_models"] = float(len(folders))
    return metrics


def evaluate_logged(
    ctx: Level, folder: Path, task: Task, test: Split, rows: list[int]
) -> dict[str, float]:
    """Robust metrics of one model, as one MLflow run tagged with the run that trained it."""
    config = read_config(folder)
    tags = {
        "noise_level": ctx.name,
        "task": config["task"],
        "method": config["method"],
        "seed": config["seed"],
        "upstream_run_id": read_run_id(folder),
    }
    inputs = ctx.inputs | {"finetune": folder.parent}  # the finetune stage's output folder
    stage = f"eval_robust@{ctx.name}"
    with stage_run(stage, ctx.experiment, ctx.params, inputs, tags) as tracker:
        result = evaluate(ctx, folder, task, test, rows)
        tracker.log_metrics(result)
    return result


def examples(n: int, max_examples: int, seed: int) -> list[int]:
    """A seeded subset of ``max_examples`` of ``n`` rows, in row order (all when fewer)."""
    if n <= max_examples:
        return list(range(n))
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_examples]
    return sorted(chosen.tolist())


def evaluate(
    ctx: Level, folder: Path, task: Task, test: Split, rows: list[int]
) -> dict[str, float]:
    """Robust metrics of the model in ``folder`` on ``rows`` of the test split."""
    start, params = time.perf_counter(), ctx.params
    model = load_finetuned(folder, ctx.clip, task).to(ctx.device)
    batches = DataLoader(Subset(test, rows), batch_size=params.batch_size, shuffle=False)
    report = robust_metrics(
        model,
        batches,
        task.loss_fn,
        params.eps,
        steps=params.steps,
        step_fraction=params.step_fraction,
        restarts=params.restarts,
        large_eps=params.large_eps,
        near_zero=params.near_zero,
        tolerance=params.tolerance,
        predict=task.predict,
        correct=task.correct,
        seed=params.seed,
        device=ctx.device,
    )
    result = report.as_metrics()
    result["wall_time_s"] = time.perf_counter() - start
    log.info("%s: clean %.3f, robust %s", folder, report.clean_accuracy, report.robust_accuracy)
    return result


def summarize(prefix: str, per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over seeds, except the flags: a check passes only if it passed for
    every seed, and masking is suspected if it was for any; plus every seed's own values."""
    out = {}
    for key in next(iter(per_seed.values())):
        values = [m[key] for m in per_seed.values()]
        if key.startswith("check_"):
            out[f"{prefix}.{key}"] = min(values)
        elif key == "gradient_masking_suspected":
            out[f"{prefix}.{key}"] = max(values)
        else:
            finite = [v for v in values if not math.isnan(v)]
            out[f"{prefix}.{key}"] = sum(finite) / len(finite) if finite else math.nan
    for seed, metrics in per_seed.items():
        out |= {f"{prefix}.seed-{seed}.{k}": v for k, v in metrics.items()}
    return out

"""``eval_robust@<level>``: white-box attacks against every fine-tuned model of one level.

One stage per level (docs/architecture.md, "Stage granularity": start-up is not free, and the
models of a level share their pre-trained encoder and test images), one MLflow run per
evaluated model, tagged with the finetune run it evaluates and the preset. Each model is
rebuilt from its folder (``config.json`` + ``trainable.safetensors``) on the level's
pre-trained CLIP and attacked as a whole (encoder + rectifier + head) by the preset's attacks
(``eval_robust.preset``, docs/study.md "Robust protocol") at every eps, on at most its
``max_examples`` test rows (a seeded subset, the same for every model). For VQA the question
is fixed and follows its example. The gradient-masking checks of
``medran.evaluation.robust`` are reported as flags.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from medran import layout, startup
from medran.contracts import (
    GRADIENT_MASKING,
    EvalRobustPaths,
    FinetunedConfig,
    item_folder,
    model_key,
    read_run_id,
    stage_id,
)
from medran.devices import pick_device
from medran.errors import InputError
from medran.evaluation.protocol import check_protocol
from medran.evaluation.robust import RobustReport, robust_metrics
from medran.evaluation.seeds import summarize_seeds
from medran.models.factory import ClipModel, load_local_dir
from medran.models.finetuned import load_finetuned, read_config, seed_dir
from medran.params import EvalRobustParams, Params, PresetParams
from medran.progress import bar
from medran.tasks import Split, Task, make_task
from medran.tracking import stage_run

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Level:
    """What every evaluated model of one level shares."""

    params: EvalRobustParams
    level: float
    clip: ClipModel
    device: str
    inputs: dict[str, Path]  # declared to MLflow (plus each model's own folder)
    experiment: str
    preset_name: str  # the attacks every model is evaluated with, a key of params.presets
    stage: str = ""  # the MLflow run name

    def __post_init__(self) -> None:
        self.stage = self.stage or stage_id("eval_robust", self.level)

    @property
    def preset(self) -> PresetParams:
        return self.params.presets[self.preset_name]


def run(params: Params, *, paths: EvalRobustPaths, level: float) -> dict[str, float]:
    tasks, methods, seeds = params.finetune.tasks, params.finetune.methods, params.finetune.seeds
    folders = {
        (t, m, s): seed_dir(paths.finetune / item_folder(t, m), s)
        for t in tasks
        for m in methods
        for s in seeds
    }
    configs = {key: read_config(folder) for key, folder in folders.items()}  # all, before work
    ctx = load_level(params, level, paths.data, paths.pretrain)
    loaded = load_tasks(ctx, tasks, configs, paths.finetune)
    metrics: dict[str, float] = {}
    outcomes: dict[str, np.ndarray] = {}
    rows = {}
    for task_name, (_, test) in loaded.items():
        rows[task_name] = examples(len(test), ctx.preset.max_examples, ctx.params.seed)
        outcomes[f"{task_name}.rows"] = test.rows["id"].to_numpy(str)[rows[task_name]]
    for task_name, method in bar(
        [(t, m) for t in loaded for m in methods], desc=ctx.stage, unit="model"
    ):
        task, test = loaded[task_name]
        model = {seed: folders[(task_name, method, seed)] for seed in seeds}
        prefix = model_key(task_name, method, "")
        scores, per_example = evaluate_model(ctx, prefix, model, task, test, rows[task_name])
        metrics |= scores
        outcomes |= per_example
    paths.outcomes.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(paths.outcomes, **outcomes)
    flags = [v for k, v in metrics.items() if k.endswith(f".{GRADIENT_MASKING}")]
    metrics[GRADIENT_MASKING] = float(max(flags))
    metrics["n_models"] = float(len(folders))
    return metrics


def load_level(params: Params, level: float, data: Path, pretrain: Path) -> Level:
    """The level's pre-trained CLIP on the evaluation's device, and its inputs."""
    section = params.eval_robust
    device = pick_device(section.device)
    clip = load_local_dir(pretrain)
    startup.ready()  # the model is loaded: work starts
    clip.model.to(device)
    inputs = {"prepared": data / layout.PREPARED, "pretrain": pretrain}
    return Level(section, level, clip, device, inputs, params.experiment, section.preset)


def load_tasks(
    ctx: Level, tasks: list[str], configs: dict[tuple[str, str, int], FinetunedConfig], root: Path
) -> dict[str, tuple[Task, Split]]:
    """Each task and its test split, the preset checked against it before any attack."""
    out = {}
    for name in tasks:
        task = make_task(name, ctx.inputs["prepared"], **task_options(name, configs, root))
        check_protocol(ctx.preset, len(task.classes), name)
        out[name] = task, task.with_context(task.load_split("test", ctx.clip.image_size), ctx.clip)
    return out


def task_options(
    task: str, configs: dict[tuple[str, str, int], FinetunedConfig], finetune_root: Path
) -> dict:
    """The task options every model of ``task`` was trained with (they must agree)."""
    options = {json.dumps(c.task_options) for k, c in configs.items() if k[0] == task}
    if len(options) > 1:
        raise InputError(
            f"the {task} models in {finetune_root} were trained with different task "
            f"options {sorted(options)}; rerun their finetune stages"
        )
    return json.loads(options.pop())


def evaluate_model(
    ctx: Level, prefix: str, folders: dict[int, Path], task: Task, test: Split, rows: list[int]
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every seed of one model (``folders``: seed -> its folder): the metrics combined over
    seeds and each seed's own, and the per-example outcomes stacked (seeds, examples), all
    under the model's ``prefix`` (``cls.ran.``)."""
    per_seed, per_example = {}, []
    for seed, folder in folders.items():
        per_seed[seed], report = evaluate_logged(ctx, folder, task, test, rows)
        per_example.append(report.outcomes)
    outcomes = {prefix + k: np.stack([o[k] for o in per_example]) for k in per_example[0]}
    return summarize_seeds(per_seed, prefix=prefix), outcomes


def evaluate_logged(
    ctx: Level, folder: Path, task: Task, test: Split, rows: list[int]
) -> tuple[dict[str, float], RobustReport]:
    """Robust metrics of one model, as one MLflow run tagged with the run that trained it."""
    config = read_config(folder)
    tags = {
        "noise_level": layout.level_name(ctx.level),
        "task": config.task,
        "method": config.method,
        "seed": config.seed,
        "upstream_run_id": read_run_id(folder),
        "preset": ctx.preset_name,
    }
    inputs = ctx.inputs | {"finetune": folder.parent}  # the finetune stage's output folder
    with stage_run(ctx.stage, ctx.experiment, ctx.params, inputs, tags) as tracker:
        result, report = evaluate(ctx, folder, task, test, rows)
        tracker.log_metrics(result)
    return result, report


def examples(n: int, max_examples: int, seed: int) -> list[int]:
    """A seeded subset of ``max_examples`` of ``n`` rows, in row order (all when fewer, or
    when ``max_examples`` is 0)."""
    if not max_examples or n <= max_examples:
        return list(range(n))
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_examples]
    return sorted(chosen.tolist())


def evaluate(
    ctx: Level, folder: Path, task: Task, test: Split, rows: list[int]
) -> tuple[dict[str, float], RobustReport]:
    """Robust metrics of the model in ``folder`` on ``rows`` of the test split."""
    start, params = time.perf_counter(), ctx.params
    model = load_finetuned(folder, ctx.clip, task).to(ctx.device)
    batches = DataLoader(Subset(test, rows), batch_size=params.batch_size, shuffle=False)
    report = robust_metrics(model, batches, task, params, ctx.device, ctx.preset)
    result = report.as_metrics()
    result["wall_time_s"] = time.perf_counter() - start
    log.info("%s: clean %.3f, robust %s", folder, report.clean_accuracy, report.robust_accuracy)
    return result, report

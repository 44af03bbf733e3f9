"""``finetune@<level>-<task>-<method>``: a downstream method on one pre-trained model.

Loads the CLIP of ``pretrain@<level>``, builds the task's frozen encoder, the method's
rectifier and a new head, and trains rectifier and head with the one Accelerate loop, once per
seed. Encoder features are computed once per (split, encoder weights) and cached in a plain
folder (not a DVC output: it is content-addressed, so a stale entry is never read): methods on
frozen features train on them, and every method with a frozen encoder is evaluated on them
(clean logits are the same either way). Adversarial methods (``ran``, ``advft``, ``fare``,
``tecoa``) also get each row's image, which every step attacks through the whole model.
Methods that tune a copy of the encoder (``fare``, ``tecoa``; at its own learning rate) read
the cached pre-trained features only as FARE's target, and are evaluated on val and test
re-encoded by their tuned encoder (never cached: the features are the seed's own).

Each seed is one MLflow run named after the stage, tagged with its lineage
(``upstream_run_id`` = the pretrain run) and writes ``<out>/seed-<seed>/``: the trainable
weights, the config that rebuilds the model for ``eval_robust``, and the run id. The first
seed's model is logged as an MLflow Model (``medran.models.pyfunc_finetuned``) and registered as
``contracts.registered_model_name``; the other seeds' runs keep their folder as the artifact
``model``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Dataset

from medran import contracts, layout, startup
from medran.contracts import (
    BLIND_ACCURACY,
    PRIOR_ACCURACY,
    TEST_ACCURACY,
    FinetunePaths,
    read_run_id,
    registered_model_name,
    stage_id,
)
from medran.data.errors import DataError
from medran.devices import pick_device
from medran.evaluation.seeds import summarize_seeds
from medran.methods import Method, get_method, trainable_parameters
from medran.models.factory import ClipModel, load_local_dir
from medran.models.finetune import FineTuneModel
from medran.models.finetuned import build_model, save_finetuned, seed_dir
from medran.names import METHODS, TASKS
from medran.params import FinetuneParams, Params, check_choices
from medran.tasks import Split, Task, make_task
from medran.tasks.features import cached_features, encode_split, feature_key
from medran.tracking import run_name, stage_run
from medran.training.loop import LoopConfig, LoopHooks, make_accelerator, train

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def task_options(params: FinetuneParams, task: str) -> dict[str, Any]:
    """Keyword options of the task's class (only classification has any)."""
    return params.cls.model_dump() if task == "cls" else {}


def head_options(params: FinetuneParams, task: str, head: str) -> dict[str, Any]:
    """Keyword options of ``task.build_head``: the mlp head's size when the head is mlp, and
    for VQA the co-attention module around it."""
    classifier = params.mlp_head.model_dump() if head == "mlp" else {}
    if task == "vqa":
        return params.vqa.model_dump() | {"classifier_options": classifier}
    return classifier


@dataclasses.dataclass
class Job:
    """What every seed of one stage shares."""

    params: FinetuneParams
    task: Task
    clip: ClipModel
    method: Method
    splits: dict[str, Dataset]
    accelerator: Accelerator
    config: dict[str, Any]  # saved with each model: enough to rebuild it (plus the seed)
    inputs: dict[str, Path]  # declared to MLflow, with their DVC md5
    experiment: str


def run(
    params: Params, *, paths: FinetunePaths, level: float, task: str, method: str
) -> dict[str, float]:
    check_choices("task", [task], TASKS)
    check_choices("method", [method], METHODS)
    start, section = time.perf_counter(), params.finetune
    job = prepare_job(params, paths, level, task, method)
    for stale in Path(paths.out).glob("seed-*"):  # no model of an earlier run survives
        shutil.rmtree(stale)
    per_seed, outcomes = {}, []
    for seed in section.seeds:
        per_seed[seed], seed_outcomes = train_seed(job, seed, seed_dir(paths.out, seed))
        outcomes.append(seed_outcomes)
    metrics = summarize(per_seed)
    test = job.splits["test"]
    prior = job.task.prior_correct(test.rows)
    metrics[PRIOR_ACCURACY] = float(prior.mean())
    write_outcomes(paths.outcomes, outcomes, prior, test)
    metrics["wall_time_s"] = time.perf_counter() - start
    return metrics


def prepare_job(
    params: Params, paths: FinetunePaths, level: float, task_name: str, method_name: str
) -> Job:
    """Everything the seeds share, every input checked before any training."""
    section = params.finetune
    method = get_method(method_name, section.method_config(method_name))
    prepared = paths.data / layout.PREPARED
    task = make_task(task_name, prepared, **task_options(section, task_name))
    pretrain_run = read_run_id(paths.pretrain)
    accelerator = make_accelerator(cpu=pick_device(section.device) == "cpu")
    clip = load_local_dir(paths.pretrain)
    startup.ready()  # the model is loaded: work starts
    clip.model.to(accelerator.device)
    splits = load_splits(task, clip, method, paths.cache, section.eval_batch_size)
    config = {
        "stage": stage_id("finetune", level, task_name, method_name),
        "level": level,
        "task": task_name,
        "task_options": task.options,  # resolved on the data (multi_label "auto": a bool)
        "method": method_name,
        "method_config": method.config.model_dump(),
        "head": method.head_type,
        "head_options": head_options(section, task_name, method.head_type),
        "classes": task.classes,
        "upstream_run_id": pretrain_run,
    }
    inputs = {"prepared": prepared, "pretrain": paths.pretrain}
    return Job(section, task, clip, method, splits, accelerator, config, inputs, params.experiment)


def load_splits(
    task: Task, clip: ClipModel, method: Method, cache_dir: Path, batch_size: int
) -> dict[str, Dataset]:
    """``train``, ``val`` and ``test`` serving cached features (``val`` may be empty); the
    training split also serves images for adversarial methods, which attack them."""
    encoder = task.build_encoder(clip)
    splits: dict[str, Dataset] = {}
    for name in SPLITS:
        split = task.with_context(task.load_split(name, clip.image_size), clip)
        if name == "test" and not len(split):
            raise DataError(f"{task.path}: the {task.name} task has no test rows to evaluate")
        if not len(split):
            splits[name] = split
            continue

        def encode(split: Split = split) -> torch.Tensor:
            return encode_split(encoder, split.images, batch_size)

        splits[name] = split.with_features(
            cached_features(cache_dir, feature_key(split, encoder), encode)
        )
    if method.adversarial:
        splits["train"] = WithImages(splits["train"])
    return splits


class WithImages(Dataset):
    """A feature split that also serves each row's image: adversarial methods attack the
    images and read the clean features from the cache instead of re-encoding them."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.split.images[int(self.split.image_index[i])]
        return self.split[i] | {"images": image.float().div(255.0)}


def write_outcomes(
    path: Path, per_seed: list[dict[str, np.ndarray]], prior: np.ndarray, test: Split
) -> None:
    """Every seed's per-example outcomes stacked (seeds, examples, ...), the trivial
    baseline's, and the test row ids, for the report's confidence intervals."""
    arrays = {k: np.stack([o[k] for o in per_seed]) for k in per_seed[0] if k != "truth"}
    if "truth" in per_seed[0]:
        arrays["truth"] = per_seed[0]["truth"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays, prior=prior, rows=test.rows["id"].to_numpy(str))


def train_seed(job: Job, seed: int, folder: Path) -> tuple[dict[str, float], dict]:
    """Train and evaluate one seed as one MLflow run; save the model to ``folder``. Returns
    its metrics and its per-example test outcomes."""
    start, stage = time.perf_counter(), job.config["stage"]
    torch.manual_seed(seed)  # the head's and rectifier's initial weights
    model = build_model(job.task, job.clip, job.method, job.config["head_options"])
    trainable, fraction = trainable_parameters(model)
    run_params, tags = run_metadata(job, seed)
    with stage_run(stage, job.experiment, run_params, job.inputs, tags) as tracker:
        steps: list[tuple[int, dict[str, float]]] = []

        def on_step(step: int, values: dict[str, float]) -> None:
            steps.append((step, values))

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values | {"epoch": epoch}, step=epoch)

        objective = job.method.objective(job.task.loss_fn)
        cfg = loop_config(job.params, job.method, seed, run_name(stage, tags))
        train_set = job.splits["train"]
        model = train(
            job.accelerator, model, train_set, objective, cfg, LoopHooks(on_step, on_epoch)
        )
        tracker.log_steps(steps)
        metrics = {"trainable_params": float(trainable), "trainable_fraction": fraction}
        metrics[contracts.FINAL_LOSS] = steps[-1][1]["loss"] if steps else float("nan")
        for name in ("val", "test"):
            if len(job.splits[name]):
                split = eval_split(model, job, name)
                scores, per_example = evaluate(model, job.task, split, job.params)
                metrics |= {f"{name}.{k}": v for k, v in scores.items()}
        outcomes = per_example  # the test split's, evaluated last (it is never empty)
        metrics["wall_time_s"] = time.perf_counter() - start
        tracker.log_metrics(metrics)
        save_finetuned(folder, model, job.config | {"seed": seed}, tracker.run_id)
        if seed == job.params.seeds[0] and tracker.run_id:  # the stage's released model
            from medran.models.pyfunc_finetuned import log_finetuned  # mlflow.pyfunc: only here

            name = registered_model_name(job.config["level"], job.task.name, job.method.name)
            log_finetuned(folder, job.inputs["pretrain"], name)
        else:
            tracker.log_artifact(folder, "model")
    log.info("%s seed %d: %s", stage, seed, _brief(metrics))
    return metrics, outcomes


def eval_split(model: FineTuneModel, job: Job, name: str) -> Split:
    """Split ``name`` serving the features ``model`` sees: the cached frozen-encoder ones, or,
    when the method tuned the encoder, the tuned encoder's (computed here, not cached)."""
    split = job.splits[name]
    if not job.method.tunes_encoder:
        return split
    return split.with_features(encode_split(model, split.images, job.params.eval_batch_size))


def loop_config(params: FinetuneParams, method: Method, seed: int, label: str) -> LoopConfig:
    """The loop's settings: the stage's schedule, the method's optimiser (and learning rates
    of its own for parts such as a tuned encoder)."""
    return LoopConfig(
        epochs=params.epochs,
        batch_size=params.batch_size,
        lr=method.config.lr,
        weight_decay=method.config.weight_decay,
        warmup_steps=method.config.warmup_steps,
        seed=seed,
        max_grad_norm=params.max_grad_norm,
        group_lrs=tuple(method.group_lrs.items()),
        label=label,
    )


def run_metadata(job: Job, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MLflow params (what this run used, not every method's section) and lineage tags."""
    params, config = job.params, job.config
    run_params = {
        "seed": seed,
        "epochs": params.epochs,
        "batch_size": params.batch_size,
        "max_grad_norm": params.max_grad_norm,
        "head": config["head"],
        "task": config["task_options"],
        "method": config["method_config"],
        "head_options": config["head_options"],
    }
    tags = {
        "noise_level": layout.level_name(config["level"]),
        "task": config["task"],
        "method": config["method"],
        "seed": seed,
        "upstream_run_id": config["upstream_run_id"],
    }
    return run_params, tags


def evaluate(
    model: FineTuneModel, task: Task, split: Split, params: FinetuneParams
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Clean metrics and per-example outcomes of ``model`` on a split that serves its encoder's
    features (``eval_split``), and the blind ones: each example answered with the image of the
    one before it (what is left without the right image: for VQA, the question)."""
    logits = predict_logits(model, split, params.eval_batch_size)
    metrics = task.metrics(logits, split.targets, split.rows)
    outcomes = task.outcomes(logits, split.targets)
    blind_logits = predict_logits(model, split, params.eval_batch_size, roll=True)
    blind = task.outcomes(blind_logits, split.targets)
    outcomes["blind"] = blind["correct"]
    metrics[BLIND_ACCURACY] = float(blind["correct"].mean())
    return metrics, outcomes


@torch.no_grad()
def predict_logits(
    model: FineTuneModel, split: Split, batch_size: int, roll: bool = False
) -> torch.Tensor:
    """Logits on every row, in order; ``roll``: each row sees the previous batch row's image."""
    model.eval()
    device = next(model.parameters()).device
    logits = []
    for batch in DataLoader(split, batch_size=batch_size, shuffle=False):
        batch = send_to_device(batch, device)
        z = batch["z"].roll(1, dims=0) if roll else batch["z"]
        logits.append(model.forward_features(z, batch.get("context")).float().cpu())
    return torch.cat(logits)


def summarize(per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """Val/test metrics averaged over seeds (plus the test accuracy's spread), the trainable
    size, and every seed's own metrics under ``seed-<seed>.``."""
    first = next(iter(per_seed.values()))
    scores = [k for k in first if k.startswith(("val.", "test."))]
    out = summarize_seeds(per_seed, keys=scores)
    out |= {k: first[k] for k in ("trainable_params", "trainable_fraction")}
    accuracies = [m[TEST_ACCURACY] for m in per_seed.values()]
    out[f"{TEST_ACCURACY}_std"] = statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0
    out["n_seeds"] = float(len(per_seed))
    return out


def _brief(metrics: dict[str, float]) -> str:
    keys = (TEST_ACCURACY, contracts.FINAL_LOSS, "wall_time_s")
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics)

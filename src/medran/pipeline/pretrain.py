"""``pretrain@<level>``: CLIP contrastive pre-training on one noisy corpus.

One Accelerate loop (``training.loop``) with open_clip's ``ClipLoss`` over the global batch.
Resumable state goes to ``paths.checkpoints`` (a DVC ``persist`` output) every epoch and every
N steps; a rerun after an interruption resumes from it, unless the params or the data changed
(``training.run_record``: the fingerprint of both, the step history and the run id go beside
it, so that the loss curve, the final metrics and the MLflow history cover the whole run, and
a kill while exporting only exports again). The released model is an open_clip
``local-dir`` folder written by the main process, with the MLflow run id beside it; it is also
logged as an MLflow Model (``medran.models.pyfunc``) and registered as
``contracts.registered_model_name``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from medran import layout, startup
from medran.contracts import (
    FINAL_LOSS,
    PretrainPaths,
    registered_model_name,
    stage_id,
    write_run_id,
)
from medran.data.errors import DataError
from medran.data.manifest import NOISY_COLUMNS, read_table
from medran.data.paths import resolve_all
from medran.devices import pick_device
from medran.fsutil import replace_dir
from medran.lineage import dvc_md5
from medran.models.factory import ClipModel, create_clip, save_local_dir
from medran.params import Params, PretrainParams
from medran.tracking import StageRun, stage_run
from medran.training import run_record
from medran.training.clip_objective import train_clip
from medran.training.data import image_text_tensors
from medran.training.loop import LoopConfig, LoopHooks, make_accelerator

log = logging.getLogger(__name__)


def training_pairs(data_root: Path, level: float) -> pd.DataFrame:
    path = data_root / layout.noisy_dir(level) / "manifest.parquet"
    frame = read_table(path, NOISY_COLUMNS, stage_id("build_noisy", level))
    train_rows = frame[frame["split"] == "train"]
    if train_rows.empty:
        raise DataError(f"noisy manifest {path} has no training rows")
    return train_rows


def config_md5(clip: ClipModel) -> str:
    """md5 of the model's open_clip config: part of the fingerprint, and a run tag."""
    return hashlib.md5(json.dumps(clip.model_cfg, sort_keys=True).encode()).hexdigest()


def loop_config(p: PretrainParams, checkpoint_dir: Path, label: str) -> LoopConfig:
    return LoopConfig(
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=p.lr,
        weight_decay=p.weight_decay,
        warmup_steps=p.warmup_steps,
        seed=p.seed,
        grad_accum_steps=p.grad_accum_steps,
        max_grad_norm=p.max_grad_norm,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_steps=p.checkpoint_every_steps,
        label=label,
    )


def run(params: Params, *, paths: PretrainPaths, level: float) -> dict[str, float]:
    """Pre-train on ``noisy/<level>``; the main process exports the model and loss curve."""
    p = params.pretrain
    accelerator = make_accelerator(
        cpu=pick_device(p.device) == "cpu",
        mixed_precision=p.mixed_precision,
        grad_accum_steps=p.grad_accum_steps,
    )
    main = accelerator.is_main_process
    pairs = training_pairs(paths.data, level)
    clip = create_clip(p.model, p.pretrained or None, seed=p.seed)
    startup.ready()  # the model is loaded: work starts
    noisy = paths.data / layout.noisy_dir(level)
    images = resolve_all(paths.data, pairs["image_path"], f"{noisy / 'manifest.parquet'}")
    dataset = image_text_tensors(images, pairs["caption"], clip.tokenizer(), clip.image_size)
    model_md5 = config_md5(clip)
    history = None
    if main:
        fingerprint = json.dumps([p.model_dump(), dvc_md5(noisy), model_md5], sort_keys=True)
        run_record.reset_stale(paths.checkpoints, sha256(fingerprint), p.epochs)
        history = run_record.StepHistory(paths.checkpoints)
    accelerator.wait_for_everyone()

    tags = {
        "noise_level": layout.level_name(level),
        "seed": p.seed,
        "data_md5.model_config": model_md5,
        "model": p.model,
    }
    if history and history.previous_run_id:  # the killed run this one carries on from
        tags["resumed_from_run_id"] = history.previous_run_id
    stage = stage_id("pretrain", level)
    with stage_run(stage, params.experiment, p, {"noisy": noisy}, tags, enabled=main) as tracker:
        hooks = logging_hooks(tracker, history)
        train_clip(accelerator, clip, dataset, loop_config(p, paths.checkpoints, stage), hooks)
        curve = history.rows if history else []
        metrics = {
            "n_train": len(pairs),
            "n_adversarial": int(pairs["is_adversarial"].sum()),
            FINAL_LOSS: curve[-1]["loss"] if curve else float("nan"),
            "images_per_s": sum(c["images_per_s"] for c in curve) / max(1, len(curve)),
        }
        tracker.log_metrics(metrics)
        if main:
            export(clip, paths.model, tracker.run_id, level)
            from medran.models.pyfunc import log_clip  # imports mlflow.pyfunc: only here

            log_clip(paths.model, registered_model_name(level))
            write_curve(paths.curve, curve)
            run_record.mark_exported(paths.checkpoints)
    return metrics


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def logging_hooks(tracker: StageRun, history: run_record.StepHistory | None) -> LoopHooks:
    """Steps and epochs to MLflow, and steps to the history beside the checkpoints. A resumed
    run first logs the steps its killed predecessor made, so its history is the whole run's."""
    if history:
        restored = [(row["step"], without_step(row)) for row in history.rows]
        tracker.log_steps(restored)
        run_record.record_run_id(history.folder, tracker.run_id)

    def on_step(step: int, values: dict[str, float]) -> None:
        tracker.log_metrics(values, step=step)
        if history:
            history.append({"step": step, **values})

    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        tracker.log_metrics(values | {"epoch": epoch}, step=epoch)

    return LoopHooks(on_step, on_epoch)


def without_step(row: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k != "step"}


def export(clip: ClipModel, model_dir: Path, run_id: str | None, level: float) -> None:
    """The released model (open_clip local-dir) and the id of the run that made it."""
    with replace_dir(model_dir) as tmp:
        save_local_dir(clip, tmp, extra={"stage": "pretrain", "noise_level": level})
        write_run_id(tmp, run_id)


def write_curve(path: Path, curve: list[dict[str, float]]) -> None:
    """Per-step loss and learning rate for ``dvc plots``, every step of the run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(curve)

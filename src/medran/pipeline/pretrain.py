"""``pretrain@<level>``: CLIP contrastive pre-training on one noisy corpus.

One Accelerate loop (``training.loop``) with open_clip's ``ClipLoss`` over the global batch.
Resumable state goes to ``checkpoint_dir`` (a DVC ``persist`` output) every epoch and every N
steps; a rerun after an interruption resumes from it, unless the params or the data changed
(the checkpoint carries a fingerprint of both). The released model is an open_clip
``local-dir`` folder written by the main process, with the MLflow run id beside it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import torch

from medran import layout
from medran.data.errors import DataError
from medran.data.manifest import NOISY_COLUMNS, read_table
from medran.models.factory import create_clip, save_local_dir
from medran.params import PretrainParams
from medran.tracking import dvc_md5, stage_run
from medran.training.clip_objective import ClipObjective
from medran.training.data import image_text_tensors
from medran.training.loop import LoopConfig, make_accelerator, read_progress, train

log = logging.getLogger(__name__)
RUN_FILE = "run.json"


def training_pairs(data_root: Path, level: float) -> pd.DataFrame:
    path = data_root / layout.noisy_dir(level) / "manifest.parquet"
    frame = read_table(path, NOISY_COLUMNS, f"build_noisy@{layout.level_name(level)}")
    train_rows = frame[frame["split"] == "train"]
    if train_rows.empty:
        raise DataError(f"noisy manifest {path} has no training rows")
    return train_rows


def reset_stale_checkpoint(checkpoint_dir: Path, fingerprint: str, epochs: int) -> None:
    """Keep a checkpoint only if it was made with the same params and data and its run did
    not finish: a forced rerun of a finished run trains again instead of zero steps."""
    stamp = checkpoint_dir / "fingerprint.txt"
    progress = read_progress(checkpoint_dir) if checkpoint_dir.is_dir() else None
    finished = progress is not None and progress["epoch"] >= epochs
    if stamp.is_file() and stamp.read_text() == fingerprint and not finished:
        return
    if checkpoint_dir.exists():
        log.info("discarding checkpoint %s: finished, or params or data changed", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    stamp.write_text(fingerprint)


def run(
    params: PretrainParams,
    level: float,
    data_root: Path,
    model_dir: Path,
    checkpoint_dir: Path,
    experiment: str,
    curve_path: Path | None = None,
) -> dict[str, float]:
    accelerator = make_accelerator(
        cpu=params.device == "cpu" or not torch.cuda.is_available(),
        mixed_precision=params.mixed_precision,
        grad_accum_steps=params.grad_accum_steps,
    )
    main = accelerator.is_main_process
    pairs = training_pairs(data_root, level)
    clip = create_clip(params.model, params.pretrained or None, seed=params.seed)
    paths = [data_root / p for p in pairs["image_path"]]
    dataset = image_text_tensors(paths, pairs["caption"], clip.tokenizer(), clip.image_size)

    noisy = data_root / layout.noisy_dir(level)
    config_md5 = hashlib.md5(json.dumps(clip.model_cfg, sort_keys=True).encode()).hexdigest()
    fingerprint = json.dumps([params.model_dump(), dvc_md5(noisy), config_md5], sort_keys=True)
    if main:
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()
        reset_stale_checkpoint(checkpoint_dir, digest, params.epochs)
    accelerator.wait_for_everyone()

    cfg = LoopConfig(
        epochs=params.epochs,
        batch_size=params.batch_size,
        lr=params.lr,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_steps,
        seed=params.seed,
        grad_accum_steps=params.grad_accum_steps,
        max_grad_norm=params.max_grad_norm,
        checkpoint_every_steps=params.checkpoint_every_steps,
    )
    objective = ClipObjective(
        clip.mean, clip.std, accelerator.process_index, accelerator.num_processes
    )
    stage = f"pretrain@{layout.level_name(level)}"
    tags = {
        "noise_level": layout.level_name(level),
        "seed": params.seed,
        "data_md5.model_config": config_md5,
        "model": params.model,
    }
    curve: list[dict[str, float]] = []
    with stage_run(stage, experiment, params, {"noisy": noisy}, tags, enabled=main) as tracker:

        def on_step(step: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values, step=step)
            curve.append({"step": step, **values})

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values | {"epoch": epoch}, step=epoch)

        clip.model = train(
            accelerator, clip.model, dataset, objective, cfg, checkpoint_dir, on_step, on_epoch
        )
        metrics = {
            "n_train": len(pairs),
            "n_adversarial": int(pairs["is_adversarial"].sum()),
            "final_loss": curve[-1]["loss"] if curve else float("nan"),
            "images_per_s": sum(c["images_per_s"] for c in curve) / max(1, len(curve)),
        }
        tracker.log_metrics(metrics)
        if main:
            export(clip, model_dir, tracker.run_id, level)
            tracker.log_artifact(model_dir, "model")
            if curve_path:
                write_curve(curve_path, curve)
    return metrics


def export(clip, model_dir: Path, run_id: str | None, level: float) -> None:
    shutil.rmtree(model_dir, ignore_errors=True)
    save_local_dir(clip, model_dir, extra={"stage": "pretrain", "noise_level": level})
    (model_dir / RUN_FILE).write_text(json.dumps({"run_id": run_id}) + "\n")


def write_curve(path: Path, curve: list[dict[str, float]]) -> None:
    """Per-step loss and learning rate for ``dvc plots`` (appends after a resume are fine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(curve)

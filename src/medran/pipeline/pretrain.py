"""``pretrain@<level>``: CLIP contrastive pre-training on one noisy corpus.

One Accelerate loop (``training.loop``) with open_clip's ``ClipLoss`` over the global batch.
Resumable state goes to ``paths.checkpoints`` (a DVC ``persist`` output) every epoch and every
N steps; a rerun after an interruption resumes from it, unless the params or the data changed
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

from medran import layout
from medran.contracts import FINAL_LOSS, PretrainPaths, stage_id, write_run_id
from medran.data.errors import DataError
from medran.data.manifest import NOISY_COLUMNS, read_table
from medran.devices import pick_device
from medran.fsutil import replace_dir
from medran.models.factory import ClipModel, create_clip, save_local_dir
from medran.params import Params, PretrainParams
from medran.tracking import dvc_md5, stage_run
from medran.training.clip_objective import train_clip
from medran.training.data import image_text_tensors
from medran.training.loop import LoopConfig, LoopHooks, make_accelerator, read_progress

log = logging.getLogger(__name__)


def training_pairs(data_root: Path, level: float) -> pd.DataFrame:
    path = data_root / layout.noisy_dir(level) / "manifest.parquet"
    frame = read_table(path, NOISY_COLUMNS, stage_id("build_noisy", level))
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


def config_md5(clip: ClipModel) -> str:
    """md5 of the model's open_clip config: part of the fingerprint, and a run tag."""
    return hashlib.md5(json.dumps(clip.model_cfg, sort_keys=True).encode()).hexdigest()


def loop_config(p: PretrainParams, checkpoint_dir: Path) -> LoopConfig:
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
    images = [paths.data / path for path in pairs["image_path"]]
    dataset = image_text_tensors(images, pairs["caption"], clip.tokenizer(), clip.image_size)
    noisy = paths.data / layout.noisy_dir(level)
    model_md5 = config_md5(clip)
    if main:
        fingerprint = json.dumps([p.model_dump(), dvc_md5(noisy), model_md5], sort_keys=True)
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()
        reset_stale_checkpoint(paths.checkpoints, digest, p.epochs)
    accelerator.wait_for_everyone()

    stage = stage_id("pretrain", level)
    tags = {
        "noise_level": layout.level_name(level),
        "seed": p.seed,
        "data_md5.model_config": model_md5,
        "model": p.model,
    }
    curve: list[dict[str, float]] = []
    with stage_run(stage, params.experiment, p, {"noisy": noisy}, tags, enabled=main) as tracker:

        def on_step(step: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values, step=step)
            curve.append({"step": step, **values})

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            tracker.log_metrics(values | {"epoch": epoch}, step=epoch)

        cfg = loop_config(p, paths.checkpoints)
        train_clip(accelerator, clip, dataset, cfg, LoopHooks(on_step, on_epoch))
        metrics = {
            "n_train": len(pairs),
            "n_adversarial": int(pairs["is_adversarial"].sum()),
            FINAL_LOSS: curve[-1]["loss"] if curve else float("nan"),
            "images_per_s": sum(c["images_per_s"] for c in curve) / max(1, len(curve)),
        }
        tracker.log_metrics(metrics)
        if main:
            export(clip, paths.model, tracker.run_id, level)
            tracker.log_artifact(paths.model, "model")
            write_curve(paths.curve, curve)
    return metrics


def export(clip: ClipModel, model_dir: Path, run_id: str | None, level: float) -> None:
    """The released model (open_clip local-dir) and the id of the run that made it."""
    with replace_dir(model_dir) as tmp:
        save_local_dir(clip, tmp, extra={"stage": "pretrain", "noise_level": level})
        write_run_id(tmp, run_id)


def write_curve(path: Path, curve: list[dict[str, float]]) -> None:
    """Per-step loss and learning rate for ``dvc plots`` (appends after a resume are fine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(curve)

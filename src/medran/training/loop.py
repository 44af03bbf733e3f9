"""The one Accelerate training loop every training stage uses.

Order, as in Accelerate's examples: seed, data, optimizer + schedule, ``prepare``, resume,
train (accumulate, clip, step), checkpoint, log. The objective is a small module that returns
named losses (``"loss"`` is optimised, the rest are logged). Resumable state (``save_state``)
lives in ``checkpoint_dir/latest``; the released model is exported by the caller.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)

Objective = Callable[[nn.Module, object], dict[str, torch.Tensor]]
StepCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    batch_size: int  # per process, per micro-step
    lr: float
    weight_decay: float
    warmup_steps: int
    seed: int
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0
    checkpoint_every_steps: int = 0  # 0: only at the end of each epoch
    log_every_steps: int = 1


def make_accelerator(
    cpu: bool = False, mixed_precision: str = "no", grad_accum_steps: int = 1
) -> Accelerator:
    """The Accelerator every training stage uses: a seedable sampler makes each epoch's
    shuffle a function of (seed, epoch), so a resumed run sees the same batches."""
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum_steps,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on gains, biases, embeddings and logit scale (open_clip's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name
        exclude = exclude or "logit_scale" in name or "embedding" in name
        (no_decay if exclude else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete state in ``checkpoint_dir`` (its ``progress.json`` is written last)."""
    done = [d for d in checkpoint_dir.glob("state-*") if (d / "progress.json").is_file()]
    return max(done, default=None)


def read_progress(checkpoint_dir: Path) -> dict[str, int] | None:
    latest = latest_checkpoint(checkpoint_dir)
    return json.loads((latest / "progress.json").read_text()) if latest else None


def _save(accelerator: Accelerator, checkpoint_dir: Path, progress: dict[str, int]) -> None:
    """Write the state to a new folder and mark it complete before deleting older ones, so a
    kill at any moment leaves at least one whole state to resume from."""
    # Zero-padded (step, epoch): names sort in training order; an epoch-end save after a
    # step save at the same step gets its own folder.
    target = checkpoint_dir / f"state-{progress['step']:09d}-{progress['epoch']:05d}"
    accelerator.save_state(str(target))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = target / "progress.json.tmp"
        tmp.write_text(json.dumps(progress))
        tmp.rename(target / "progress.json")
        for old in checkpoint_dir.glob("state-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _resume(accelerator: Accelerator, checkpoint_dir: Path | None) -> dict[str, int]:
    """Load the newest complete state if there is one; returns where to continue."""
    latest = latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if latest is None:
        return {"epoch": 0, "batch": 0, "step": 0}
    accelerator.load_state(str(latest))
    progress = json.loads((latest / "progress.json").read_text())
    log.warning("resumed from %s at %s", latest, progress)
    return progress


def train(
    accelerator: Accelerator,
    model: nn.Module,
    dataset: Dataset,
    objective: Objective,
    cfg: LoopConfig,
    checkpoint_dir: Path | None = None,
    on_step: StepCallback | None = None,
    on_epoch: StepCallback | None = None,
) -> nn.Module:
    """Train ``model`` in place; returns the unwrapped model. Resumes from ``checkpoint_dir``."""
    set_seed(cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(dataset) >= cfg.batch_size * accelerator.num_processes,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    # The schedule counts optimizer updates; it is stepped by hand (not prepared) so it
    # advances once per update whatever the process count.
    total = cfg.epochs * max(1, math.ceil(len(loader) / cfg.grad_accum_steps))
    schedule = warmup_cosine(cfg.warmup_steps, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if checkpoint_dir:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    progress = _resume(accelerator, checkpoint_dir)
    step = progress["step"]
    if step:
        # Rebuilt from the step count rather than registered for checkpointing: Accelerate
        # would unpickle a registered object with weights_only=False.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule, last_epoch=step - 1)

    for epoch in range(progress["epoch"], cfg.epochs):
        model.train()
        loader.set_epoch(epoch)
        skip = progress["batch"] if epoch == progress["epoch"] else 0
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        totals: dict[str, float] = {}
        batch_index, n_batches, tick = skip, 0, time.perf_counter()
        for batch in epoch_loader:
            with accelerator.accumulate(model):
                losses = objective(model, batch)
                accelerator.backward(losses["loss"])
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            values = {k: float(accelerator.reduce(v.detach(), "mean")) for k, v in losses.items()}
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + v
            batch_index += 1
            n_batches += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            step += 1
            if on_step and step % cfg.log_every_steps == 0:
                images = n_batches * cfg.batch_size * accelerator.num_processes
                speed = images / (time.perf_counter() - tick)
                on_step(step, values | {"lr": scheduler.get_last_lr()[0], "images_per_s": speed})
            every = cfg.checkpoint_every_steps
            if checkpoint_dir and every and step % every == 0:
                _save(
                    accelerator,
                    checkpoint_dir,
                    {"epoch": epoch, "batch": batch_index, "step": step},
                )
        if checkpoint_dir:
            _save(accelerator, checkpoint_dir, {"epoch": epoch + 1, "batch": 0, "step": step})
        if on_epoch:
            on_epoch(epoch + 1, {f"epoch_{k}": v / max(1, n_batches) for k, v in totals.items()})
    model = accelerator.unwrap_model(model)
    check_ranks_in_sync(accelerator, model)
    return model


def check_ranks_in_sync(accelerator: Accelerator, model: nn.Module) -> None:
    """Every process must end with the same weights; otherwise the ranks trained separate
    copies (e.g. a launcher that did not set up DDP) and the export would be one of them."""
    if accelerator.num_processes == 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    gathered = accelerator.gather(checksum.reshape(1).to(accelerator.device))
    if not torch.allclose(gathered, gathered[0].expand_as(gathered), rtol=1e-9, atol=0.0):
        raise RuntimeError(f"ranks ended with different weights: checksums {gathered.tolist()}")
    log.info("%d ranks in sync (weight checksum %.6f)", accelerator.num_processes, checksum)

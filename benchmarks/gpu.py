"""Throughput and model FLOP utilisation (MFU) of medran's heavy loops on one CUDA GPU.

It measures, on ``cuda:0``:

* ``peak``: the bf16 matmul FLOP/s of this GPU (square GEMMs, best of several sizes), the
  denominator of every MFU below;
* ``attack``: the MF-ii image attack (``medran.attacks.mfii``) on a ViT-B/16 at 224 px, in fp32
  and in bf16 autocast: image-steps/s;
* ``pretrain``: medran's own training loop (Accelerate, open_clip's ``ClipLoss``,
  ``medran.training.clip_objective``) on a ViT-B/16, global batch 256, bf16: images/s;
* ``eval_robust``: APGD-CE (``medran.attacks.apgd``) against a fine-tuned classifier (the
  ViT-B/16 encoder, a linear head over 14 labels, BCE) in bf16 autocast: image-steps/s. The
  objective never reports an example as fooled, so every step attacks the whole batch (the
  steady-state cost; a real run's cost falls as examples break).

FLOPs per unit (image-step or image) come from torch's ``FlopCounterMode`` on one unit of work
(matmuls and convolutions, the usual MFU convention); MFU = FLOPs/s achieved / peak. Models
are random-init: weights do not change the cost. Each case is timed after a warm-up, best of
``--repeats``. On a modern GPU the whole run takes a few minutes; ``--budget-s`` (480) stops
starting new cases past it.

Without CUDA it prints why and exits 0, writing nothing. ``--dry-run`` runs every case on the
CPU with the tiny model (``medran-tiny``, 64 px), tiny batches and two steps: it checks the
code paths, not the speed (it writes ``--out`` only if given).

    make benchmark-gpu                    # writes reports/benchmarks/gpu.json
    python benchmarks/gpu.py --dry-run    # on any machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

# A script beside this one (its folder is on sys.path when this runs as a script).
from attack_throughput import sync, timed
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "gpu.json"


@dataclass(frozen=True)
class Scale:
    """Sizes of one run: the real GPU benchmark or the CPU dry run."""

    model: str
    image_size: int
    attack_batch: int
    attack_steps: int
    pretrain_batch: int
    pretrain_steps: int
    robust_batch: int
    robust_steps: int
    matmul_sizes: tuple[int, ...]


GPU = Scale("ViT-B-16", 224, 128, 20, 256, 12, 128, 20, (4096, 8192))
DRY = Scale("medran-tiny", 64, 4, 2, 8, 3, 4, 2, (256,))
N_LABELS = 14  # ChestX-ray14's findings


def best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    return timed(fn, device, repeats)


def flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of ``fn`` (matmuls and convolutions, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def autocast(device: torch.device, precision: str) -> torch.autocast:
    enabled = precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def matmul_peak(device: torch.device, sizes: tuple[int, ...], repeats: int) -> dict:
    """bf16 GEMM FLOP/s, best over ``sizes``: what the GPU's tensor cores reach here."""
    best = {"flops_per_s": 0.0}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
        calls = 20 if device.type == "cuda" else 2

        def run(a: torch.Tensor = a, b: torch.Tensor = b, calls: int = calls) -> None:
            for _ in range(calls):
                torch.mm(a, b)

        seconds = best_time(run, device, repeats) / calls
        rate = 2 * n**3 / seconds
        if rate > best["flops_per_s"]:
            best = {"flops_per_s": rate, "size": n}
    return best


def bench_attack(scale: Scale, device: torch.device, precision: str, repeats: int) -> dict:
    from medran.attacks.mfii import MFII
    from medran.attacks.pgd import Budget
    from medran.models.factory import create_clip
    from medran.models.wrappers import ImageEncoder

    clip = create_clip(scale.model, seed=0)
    encoder = ImageEncoder(clip).to(device).eval().requires_grad_(False)
    n, size = scale.attack_batch, scale.image_size
    x = torch.rand(n, 3, size, size, device=device)
    target = torch.rand(n, 3, size, size, device=device)
    attack = MFII(encoder, Budget(8 / 255, 1 / 255, scale.attack_steps, random_start=False))

    def run() -> None:
        with autocast(device, precision):
            attack(x, target)

    def one_step() -> None:  # one image-step's work: forward and input-gradient backward
        image = x[:1].clone().requires_grad_()
        with autocast(device, precision):
            encoder(image).float().sum().backward()

    seconds = best_time(run, device, repeats)
    rate = n * scale.attack_steps / seconds
    return {
        "precision": precision,
        "batch": n,
        "steps": scale.attack_steps,
        "seconds": seconds,
        "image_steps_per_s": rate,
        "flops_per_unit": flops(one_step),
    }


def bench_pretrain(scale: Scale, device: torch.device, repeats: int) -> dict:
    from medran.models.factory import create_clip
    from medran.training.clip_objective import train_clip
    from medran.training.data import ImageTextTensors
    from medran.training.loop import LoopConfig, LoopHooks, make_accelerator

    precision = "bf16" if device.type == "cuda" else "no"
    accelerator = make_accelerator(cpu=device.type == "cpu", mixed_precision=precision)
    clip = create_clip(scale.model, seed=0)
    n = scale.pretrain_batch * (scale.pretrain_steps + 2)  # two warm-up steps, then timed
    size, length = scale.image_size, clip.context_length
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    tokens = torch.randint(1, clip.model.vocab_size, (n, length))
    stamps: list[float] = []

    def on_step(step: int, values: dict) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    config = LoopConfig(
        epochs=1,
        batch_size=scale.pretrain_batch,
        lr=5e-4,
        weight_decay=0.1,
        warmup_steps=1,
        seed=0,
        label="benchmark pretrain",
    )
    best = float("inf")
    for _ in range(repeats):
        stamps.clear()
        train_clip(
            accelerator, clip, ImageTextTensors(images, tokens), config, LoopHooks(on_step=on_step)
        )
        best = min(best, (stamps[-1] - stamps[1]) / (len(stamps) - 2))  # after the warm-up
    model = clip.model.to(device).train()
    batch_images = images[: scale.pretrain_batch].to(device).float().div(255)
    batch_tokens = tokens[: scale.pretrain_batch].to(device)

    def one_step() -> None:
        with autocast(device, "bf16" if precision == "bf16" else "fp32"):
            out = model(image=batch_images, text=batch_tokens)
            (out["image_features"] @ out["text_features"].T).float().sum().backward()

    per_image = flops(one_step) / scale.pretrain_batch
    return {
        "precision": precision if precision != "no" else "fp32",
        "global_batch": scale.pretrain_batch,
        "steps_timed": scale.pretrain_steps,
        "seconds_per_step": best,
        "images_per_s": scale.pretrain_batch / best,
        "flops_per_unit": per_image,
    }


def bench_robust(scale: Scale, device: torch.device, repeats: int) -> dict:
    from medran.attacks.apgd import apgd
    from medran.methods import get_method
    from medran.models.factory import create_clip
    from medran.models.finetuned import build_model
    from medran.params import load_params
    from medran.tasks import ClsTask

    clip = create_clip(scale.model, seed=0)
    clip.model.to(device)
    labels = [f"finding-{i}" for i in range(N_LABELS)]
    task = ClsTask.from_vocabulary(labels, multi_label=True, normalize_features=True)
    method = get_method("lp", load_params(ROOT / "params.yaml").finetune.method_config("lp"))
    model = build_model(task, clip, method, {}).to(device).eval()
    n, size = scale.robust_batch, scale.image_size
    x = torch.rand(n, 3, size, size, device=device)
    y = (torch.rand(n, N_LABELS, device=device) < 0.2).float()
    generator = torch.Generator().manual_seed(0)

    def objective(adv: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(device, "bf16" if device.type == "cuda" else "fp32"):
            logits = model(adv).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y[index], reduction="none"
        ).mean(1)
        return loss, torch.zeros(len(index), dtype=torch.bool, device=device)  # never fooled

    def run() -> None:
        apgd(objective, x, 4 / 255, scale.robust_steps, generator)

    def one_step() -> None:
        image = x[:1].clone().requires_grad_()
        loss, _ = objective(image, torch.zeros(1, dtype=torch.long, device=device))
        loss.sum().backward()

    seconds = best_time(run, device, repeats)
    # APGD evaluates its start once, then once per step.
    rate = n * (scale.robust_steps + 1) / seconds
    return {
        "precision": "bf16" if device.type == "cuda" else "fp32",
        "batch": n,
        "steps": scale.robust_steps,
        "seconds": seconds,
        "image_steps_per_s": rate,
        "flops_per_unit": flops(one_step),
    }


def with_mfu(row: dict, rate_key: str, peak: float) -> dict:
    achieved = row[rate_key] * row["flops_per_unit"]
    return row | {"achieved_flops_per_s": achieved, "mfu": achieved / peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", type=Path, help=f"default {OUT} (none for a dry run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=480.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "benchmark-gpu: skipped: no CUDA device here (torch.cuda.is_available() is "
            "False); `python benchmarks/gpu.py --dry-run` checks the script on the CPU"
        )
        return 0
    scale, device = (DRY, torch.device("cpu")) if args.dry_run else (GPU, torch.device("cuda"))
    repeats = 1 if args.dry_run else args.repeats
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    start = time.perf_counter()
    peak = matmul_peak(device, scale.matmul_sizes, repeats)
    cases: list[tuple[str, Callable[[], dict], str]] = [
        ("attack_fp32", lambda: bench_attack(scale, device, "fp32", repeats), "image_steps_per_s"),
        ("attack_bf16", lambda: bench_attack(scale, device, "bf16", repeats), "image_steps_per_s"),
        ("pretrain_bf16", lambda: bench_pretrain(scale, device, repeats), "images_per_s"),
        ("eval_robust_bf16", lambda: bench_robust(scale, device, repeats), "image_steps_per_s"),
    ]
    results, skipped = {}, []
    for name, run, rate_key in cases:
        if time.perf_counter() - start > args.budget_s:
            skipped.append(name)
            continue
        row = with_mfu(
            run() | {"model": scale.model, "image_size": scale.image_size},
            rate_key,
            peak["flops_per_s"],
        )
        results[name] = row
        print(f"{name:<17} {row[rate_key]:>10.1f} {rate_key:<18} MFU {row['mfu']:.3f}", flush=True)
    report = {
        "environment": {
            "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "dry_run": args.dry_run,
        },
        "peak_bf16_matmul": peak,
        "results": results,
        "skipped_past_budget": skipped,
        "wall_s": time.perf_counter() - start,
    }
    out = args.out or (None if args.dry_run else OUT)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput and loop efficiency of the MF-ii image attack (a script, not a test).

For each (model, batch size) it times

* ``fwd+bwd``: one forward + backward of the image encoder w.r.t. its input, in a tight loop
  (the irreducible cost of one attack step), and
* ``embed``: the one forward of the target images that MF-ii makes per batch, and
* ``attack``: a whole ``MFII`` call of ``steps`` steps (target embeddings, start, updates),

and reports throughput = batch x steps / attack time (image-steps/s), efficiency = steps x
fwd+bwd time / attack time (1.0: the attack costs nothing beyond the model's own forward and
backward passes) and loop efficiency, the same without the one-off target forward (which
weighs 1/(3 x steps) of a call: a lot at the few steps a 2-core CPU affords, nothing at 100).
Models are random-init (``create_clip``); weights do not change the cost. Peak memory: the
process's max RSS, and CUDA max allocated on a GPU. Times are the best of ``--repeats``.

    python benchmarks/attack_throughput.py  # CPU; writes reports/benchmarks/attack.json
    python benchmarks/attack_throughput.py --device cuda --out reports/benchmarks/attack-cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from medran.attacks.base import cosine
from medran.attacks.mfii import MFII
from medran.attacks.pgd import Budget
from medran.models.factory import ClipModel, create_clip
from medran.models.wrappers import ImageEncoder

# (model, image size, steps, batch sizes per device)
CASES = {
    "cpu": [("medran-tiny", 64, 20, (8, 32)), ("ViT-B-32", 224, 8, (4, 16))],
    "cuda": [("medran-tiny", 64, 50, (32, 256)), ("ViT-B-32", 224, 20, (16, 128))],
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def forward_backward(encoder: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, n: int):
    """``n`` forward + backward passes w.r.t. the input, nothing else."""
    with torch.no_grad():
        reference = encoder(target)
    leaf = x.clone().requires_grad_(True)

    def run() -> None:
        for _ in range(n):
            score = cosine(encoder(leaf), reference).sum()
            torch.autograd.grad(score, leaf)

    return run


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench(
    clip: ClipModel, size: int, steps: int, batch: int, device: torch.device, repeats: int
) -> dict:
    """The attack on ``size`` px images: resized inside the encoder to ``clip``'s own
    resolution when they differ, as the attack stage does."""
    encoder = ImageEncoder(clip).to(device).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=generator).to(device)
    target = torch.rand(batch, 3, size, size, generator=generator).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    forward_backward(encoder, x, target, 1)()  # warm-up
    step = timed(forward_backward(encoder, x, target, steps), device, repeats) / steps
    with torch.no_grad():
        embed = timed(lambda: encoder(target), device, repeats)
    attack = MFII(encoder, Budget(8 / 255, 1 / 255, steps, random_start=False))
    total = timed(lambda: attack(x, target), device, repeats)
    row = {
        "model": clip.name,
        "image_size": size,
        "batch_size": batch,
        "steps": steps,
        "fwd_bwd_s": step,
        "embed_s": embed,
        "attack_s": total,
        "image_steps_per_s": batch * steps / total,
        "efficiency": steps * step / total,
        "loop_efficiency": steps * step / (total - embed),
        "peak_rss_mib": peak_rss_mib(),
    }
    if device.type == "cuda":
        row["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/attack.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)
    torch.manual_seed(0)

    rows = []
    header = f"{'model':<12} {'px':>4} {'batch':>5} {'steps':>5} {'fwd+bwd ms':>10} "
    header += f"{'attack s':>8} {'img-steps/s':>11} {'eff':>5} {'loop':>5} {'RSS MiB':>8}"
    print(header + ("  CUDA MiB" if device.type == "cuda" else ""))
    for name, size, steps, batches in CASES[args.device]:
        for batch in batches:
            row = bench(create_clip(name, seed=0), size, steps, batch, device, args.repeats)
            rows.append(row)
            line = f"{name:<12} {size:>4} {batch:>5} {steps:>5} {row['fwd_bwd_s'] * 1e3:>10.1f} "
            line += f"{row['attack_s']:>8.2f} {row['image_steps_per_s']:>11.1f} "
            line += f"{row['efficiency']:>5.2f} {row['loop_efficiency']:>5.2f} "
            line += f"{row['peak_rss_mib']:>8.0f}"
            if "cuda_max_allocated_mib" in row:
                line += f"  {row['cuda_max_allocated_mib']:>8.0f}"
            print(line, flush=True)

    environment = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    summary = {
        "min_efficiency": min(r["efficiency"] for r in rows),
        "median_efficiency": statistics.median(r["efficiency"] for r in rows),
        "min_loop_efficiency": min(r["loop_efficiency"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"environment": environment, "results": rows, "summary": summary}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"efficiency min {summary['min_efficiency']:.3f}, median "
        f"{summary['median_efficiency']:.3f}; loop efficiency min "
        f"{summary['min_loop_efficiency']:.3f}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()

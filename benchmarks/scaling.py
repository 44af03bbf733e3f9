"""How medran's costs grow with their work: scaling curves (a script, not a test).

* ``attack``: MF-ii image-steps/s (``attack_throughput.bench``: the image encoder's forward
  and input-gradient backward per step) against batch size at 64 px, and against image size
  (64, 128, 224 px) at one batch size, on ``medran-tiny`` built at that size (patch 8: 64, 256
  and 784 tokens).
* ``pretrain``: images/s of medran's training loop (``gpu.bench_pretrain``: Accelerate,
  ``ClipLoss``, AdamW) against the global batch, on ``medran-tiny`` at 64 px.
* ``pipeline``: the wall time of a whole ``dvc repro`` from nothing at CI scale
  (``configs/ci.yaml``) against the number of noise levels (1, 2, 4), with ``medran.benchmark``.

Each curve also gets its "linearity": the cost per unit of work at the largest size over the
cost at the smallest (1.0: the cost grows exactly with the work; below 1: economies of scale,
e.g. batching amortising per-call overhead; above 1: super-linear, e.g. attention's quadratic
cost in the token count). The work of an attack is image-steps (batch) or pixels x
image-steps (image size); of pre-training, images; of the pipeline, noise levels, where the
fit is a fixed part plus a cost per level. Writes ``reports/benchmarks/scaling.json`` and
``scaling.png``.

    python benchmarks/scaling.py                # all three, ~25 min on 2 cores
    python benchmarks/scaling.py --skip-pipeline
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

# Scripts beside this one (their folder is on sys.path when this runs as a script).
from attack_throughput import bench as bench_attack
from gpu import DRY, bench_pretrain

from medran.models.factory import create_clip

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "scaling.json"
MODEL = "medran-tiny"
ATTACK_BATCHES = (1, 4, 16, 64)
ATTACK_SIZES = (64, 128, 224)
ATTACK_SIZE_BATCH = 8
PRETRAIN_BATCHES = (16, 32, 64, 128)
LEVELS = {1: [0.0], 2: [0.0, 0.5], 4: [0.0, 0.1, 0.25, 0.5]}


def attack_curves(steps: int, repeats: int) -> dict:
    device = torch.device("cpu")
    clip = create_clip(MODEL, seed=0)
    by_batch = [bench_attack(clip, 64, steps, b, device, repeats) for b in ATTACK_BATCHES]
    by_size = [
        bench_attack(
            create_clip(MODEL, seed=0, image_size=s), s, steps, ATTACK_SIZE_BATCH, device, repeats
        )
        for s in ATTACK_SIZES
    ]
    keep = ("batch_size", "image_size", "image_steps_per_s", "fwd_bwd_s", "attack_s")
    by_batch = [{k: r[k] for k in keep} for r in by_batch]
    by_size = [{k: r[k] for k in keep} for r in by_size]
    return {
        "model": MODEL,
        "steps": steps,
        "by_batch": by_batch,
        "by_image_size": by_size,
        # work: image-steps (batch); pixels x image-steps (size)
        "linearity_batch": 1
        / (by_batch[-1]["image_steps_per_s"] / by_batch[0]["image_steps_per_s"]),
        "linearity_image_size": (by_size[0]["image_steps_per_s"] / by_size[-1]["image_steps_per_s"])
        / (ATTACK_SIZES[-1] ** 2 / ATTACK_SIZES[0] ** 2),
    }


def pretrain_curve(repeats: int) -> dict:
    device = torch.device("cpu")
    rows = []
    for batch in PRETRAIN_BATCHES:
        scale = dataclasses.replace(DRY, pretrain_batch=batch, pretrain_steps=6)
        row = bench_pretrain(scale, device, repeats)
        rows.append(
            {
                "global_batch": batch,
                "images_per_s": row["images_per_s"],
                "seconds_per_step": row["seconds_per_step"],
            }
        )
    return {
        "model": MODEL,
        "image_size": DRY.image_size,
        "by_batch": rows,
        "linearity_batch": rows[0]["images_per_s"] / rows[-1]["images_per_s"],
    }


def pipeline_curve() -> dict:
    base = yaml.safe_load((ROOT / "configs" / "ci.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="medran-scaling-") as tmp:
        for n, levels in LEVELS.items():
            overrides = Path(tmp) / f"levels-{n}.yaml"
            overrides.write_text(yaml.safe_dump(base | {"noise_levels": levels}))
            out = Path(tmp) / f"levels-{n}.json"
            command = [
                sys.executable,
                "-m",
                "medran.benchmark",
                "--project",
                str(ROOT),
                "--overrides",
                str(overrides),
                "--out",
                str(out),
                "--repeats",
                "1",
            ]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            result = json.loads(out.read_text())
            groups: dict[str, float] = {}
            for stage, values in result["stages"].items():
                name = stage.split("@")[0]
                groups[name] = groups.get(name, 0.0) + values["wall_s"]
            rows.append(
                {
                    "levels": n,
                    "noise_levels": levels,
                    "wall_s": result["total_wall_s"],
                    "stages": len(result["stages"]),
                    "wall_s_by_stage": groups,
                    "startup_fraction": result["startup_fraction"],
                }
            )
    first, middle, last = rows
    per_level = (last["wall_s"] - first["wall_s"]) / (last["levels"] - first["levels"])
    fixed = first["wall_s"] - per_level * first["levels"]  # the level-independent part
    return {
        "scale": "configs/ci.yaml",
        "by_levels": rows,
        "seconds_per_added_level": per_level,
        "fixed_seconds": fixed,
        # 0: the 2-level run lies on the line through the 1- and 4-level runs (linear in levels)
        "middle_point_error_s": middle["wall_s"] - (fixed + per_level * middle["levels"]),
        "linearity_levels": (last["wall_s"] / last["levels"]) / (first["wall_s"] / first["levels"]),
    }


def figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("attack", "by_batch", "batch_size", "image_steps_per_s", "attack: batch (64 px)"),
        (
            "attack",
            "by_image_size",
            "image_size",
            "image_steps_per_s",
            f"attack: image size (batch {ATTACK_SIZE_BATCH})",
        ),
        ("pretrain", "by_batch", "global_batch", "images_per_s", "pre-training: batch"),
        ("pipeline", "by_levels", "levels", "wall_s", "pipeline (CI scale): levels"),
    ]
    panels = [p for p in panels if p[0] in report]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (part, key, x, y, title) in zip(list(axes), panels, strict=True):
        rows = report[part][key]
        ax.plot([r[x] for r in rows], [r[y] for r in rows], "o-")
        ax.set(title=title, xlabel=x.replace("_", " "), ylabel=y.replace("_", " "))
        if x in ("batch_size", "global_batch"):
            ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="attack steps per call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    start = time.perf_counter()
    report = {
        "attack": attack_curves(args.steps, args.repeats),
        "pretrain": pretrain_curve(args.repeats),
    }
    print(json.dumps(report, indent=1), flush=True)
    if not args.skip_pipeline:
        report["pipeline"] = pipeline_curve()
    report["environment"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "wall_s": time.perf_counter() - start,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    figure(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

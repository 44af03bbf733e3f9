"""Pre-training throughput and peak memory: our loop next to open_clip's own trainer (a script).

Both trainers fit the same CLIP config (``medran-tiny``, 64 px) on the same image-caption
pairs (the upstream train split of a freshly synthesized and prepared data root, 3200 pairs at
the default sizes) with the same global batch, epochs, AdamW hyper-parameters (lr, weight
decay, betas, eps), warmup + cosine schedule, gradient clipping, fp32 and torch thread count:

* ``ours``: ``medran.training.loop.train`` with ``ClipObjective`` (open_clip's ``ClipLoss``), as
  ``pipeline/pretrain.py`` calls it, minus MLflow: images are decoded once into a uint8 tensor.
* ``open_clip_train``: ``open_clip_train.main.main([...])`` with ``--dataset-type csv`` (PIL
  decode, train transforms and tokenizing per sample). It runs with ``--workers 0`` (all in
  the main process, like ours) and ``--workers 1`` (one loader process beside the compute
  threads, its usual set-up; on 2 cores it competes with them); the faster is the baseline.

Each trainer runs in its own fresh subprocess, so the peak RSS (``ru_maxrss``) is its own
(loader workers are children: reported apart). Timed: from just before the data is loaded
(ours: image decoding + tokenizing; open_clip_train: ``get_data``, i.e. CSV read and DataLoader
set-up) to the end of the last optimizer step. Not timed, for both: interpreter start-up,
imports, model creation, and open_clip_train's final checkpoint save. Throughput = images
trained / timed seconds (both drop the last partial batch, so both train the same images).
The trainers run ``--repeats`` times, interleaved, and the best time counts; CPU seconds
(process + children) are reported too, as a check when the machine is shared. Last, a
``floor`` process times what no loop avoids (a forward and backward, clipping, a fused AdamW
update): the baseline's step over it is the most any loop can gain with the same computation.

    python benchmarks/pretrain_throughput.py  # writes reports/benchmarks/pretrain.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINERS = Path(__file__).resolve().with_name("pretrain_trainers.py")
MODEL = "medran-tiny"


def make_data(root: Path) -> Path:
    """A data root with params.yaml's synthetic data, made and prepared by the pipeline's own
    stages (the sources relative to ``root``)."""
    import contextlib

    import yaml

    from medran.params import deep_merge, read_yaml
    from medran.runner import run_stage

    sources = {
        "upstream": {"path": "raw/rocov2"},
        "targets": {"path": "raw/medicat"},
        "cls": {"path": "raw/chestxray14"},
        "vqa": {"path": "raw/vqarad"},
    }
    project = read_yaml(Path(__file__).resolve().parents[1] / "params.yaml")
    params = deep_merge(project, {"prepare_data": {"image_size": 64, "sources": sources}})
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with contextlib.chdir(root):
        run_stage("synthesize", ["--out", "raw", "--metrics", "synthesize.json"])
        run_stage("prepare_data", ["--out", "prepared", "--metrics", "prepare_data.json"])
    return root / "prepared"


def write_csv(prepared: Path, csv_path: Path) -> int:
    """The upstream train pairs with absolute image paths, as open_clip_train's csv reader wants."""
    import pandas as pd

    frame = pd.read_parquet(prepared / "upstream.parquet")
    frame = frame[frame["split"] == "train"]
    table = pd.DataFrame(
        {"filepath": [str((prepared / p).resolve()) for p in frame["image_path"]]}
        | {"title": frame["caption"].tolist()}
    )
    table.to_csv(csv_path, sep="\t", index=False)
    return len(table)


def spawn(setup: dict, trainer: str, workers: int, work: Path) -> dict:
    """One trainer in a fresh interpreter; returns its timings, peak RSS and loss curve."""
    logs = tempfile.mkdtemp(prefix="open_clip_train-", dir=work)
    config, result = work / "setup.json", work / "result.json"
    config.write_text(json.dumps(setup | {"trainer": trainer, "workers": workers, "logs": logs}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(TRAINERS), str(config), str(result)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{trainer} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(result.read_text())


def summarise(setup: dict, name: str, workers: int, runs: list[dict]) -> dict:
    """Best (shortest) time of the repeats; the largest peak RSS; the loss curve of one run
    (the runs are seeded, so their curves agree)."""
    best = min(runs, key=lambda r: r["seconds"])
    losses = best["losses"]
    per_epoch = len(losses) // setup["epochs"]
    images = len(losses) * setup["batch_size"]
    return {
        "trainer": name,
        "workers": workers,
        "steps": len(losses),
        "images": images,
        "seconds": best["seconds"],
        "seconds_all_repeats": [r["seconds"] for r in runs],
        "data_seconds": best["data_seconds"],
        "cpu_seconds": min(r["cpu_seconds"] for r in runs),
        "images_per_s": images / best["seconds"],
        "train_images_per_s": images / (best["seconds"] - best["data_seconds"]),
        "images_per_cpu_s": images / min(r["cpu_seconds"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "rss_before_mib": best["rss_before_mib"],
        "children_peak_rss_mib": max(r.get("children_peak_rss_mib", 0.0) for r in runs),
        "first_epoch_loss": sum(losses[:per_epoch]) / per_epoch,
        "last_epoch_loss": sum(losses[-per_epoch:]) / per_epoch,
    }


def summarise_floor(floor: dict, ours: dict, baseline: dict) -> dict:
    """The floor's sum against both trainers' whole timed span per step: ``ceiling_ratio`` is
    the baseline's step over the floor, the most any loop with the same model, batch,
    threads and fp32 arithmetic can gain on it."""
    least = floor["forward_backward_s"] + floor["clip_grad_s"] + floor["optimizer_step_s"]
    baseline_step = baseline["seconds"] / baseline["steps"]
    return {k: v for k, v in floor.items() if k.endswith("_s")} | {
        "floor_step_s": least,
        "ours_step_s": ours["seconds"] / ours["steps"],
        "baseline_step_s": baseline_step,
        "ceiling_ratio": baseline_step / least,
    }


def print_table(rows: list[dict]) -> None:
    header = f"{'trainer':<30} {'steps':>5} {'time s':>7} {'data s':>6} {'img/s':>7} "
    header += f"{'train img/s':>11} {'img/CPU-s':>9} {'peak RSS MiB':>12} {'+train MiB':>10} "
    header += f"{'loss e1->eN':>13}"
    print(header)
    for r in rows:
        line = f"{r['trainer']:<30} {r['steps']:>5} {r['seconds']:>7.2f} {r['data_seconds']:>6.2f} "
        line += f"{r['images_per_s']:>7.1f} {r['train_images_per_s']:>11.1f} "
        line += f"{r['images_per_cpu_s']:>9.1f} "
        line += f"{r['peak_rss_mib']:>12.0f} {r['peak_rss_mib'] - r['rss_before_mib']:>10.0f} "
        line += f"{r['first_epoch_loss']:>6.3f}->{r['last_epoch_loss']:<6.3f}"
        print(line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=MODEL, help="an open_clip or medran config name")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="global = per process (1)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--wd", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1],
        help="open_clip_train --workers values to run (the fastest is the baseline)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs; best time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, help="reuse a data root holding prepared/")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/pretrain.json"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before the start; timings share the CPU")
    trainers = [("ours", "ours", 0)] + [
        (f"open_clip_train (workers={w})", "open_clip_train", w) for w in args.workers
    ]
    setup = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,  # global = per process: one process each
        "lr": args.lr,
        "weight_decay": args.wd,
        "warmup_steps": args.warmup,
        "max_grad_norm": args.grad_clip,
        "threads": args.threads,
        "seed": args.seed,
    }
    with tempfile.TemporaryDirectory(prefix="medran-bench-") as tmp:
        work = Path(tmp)
        tick = time.perf_counter()
        prepared = (args.data_root / "prepared") if args.data_root else make_data(work / "data")
        n_pairs = write_csv(prepared, work / "train.csv")
        print(
            f"{n_pairs} train pairs ({time.perf_counter() - tick:.0f}s to make the data); "
            f"batch {args.batch_size}, {args.epochs} epochs, {args.threads} torch threads, "
            f"best of {args.repeats} interleaved runs"
        )
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in trainers}
        csv = {"csv": str(work / "train.csv")}
        for _ in range(args.repeats):  # interleaved, so a slow spell hits every trainer
            for name, trainer, workers in trainers:
                runs[name].append(spawn(setup | csv, trainer, workers, work))
        floor = spawn(setup | csv, "floor", 0, work)
    rows = [summarise(setup, name, workers, runs[name]) for name, _, workers in trainers]
    print_table(rows)
    baseline = max(rows[1:], key=lambda r: r["images_per_s"])
    ratio = rows[0]["images_per_s"] / baseline["images_per_s"]
    rss_ratio = rows[0]["peak_rss_mib"] / baseline["peak_rss_mib"]
    print(f"ours / {baseline['trainer']}: throughput x{ratio:.2f}, peak RSS x{rss_ratio:.2f}")
    floor = summarise_floor(floor, rows[0], baseline)
    print(
        f"a step's floor: forward + backward {floor['forward_backward_s'] * 1e3:.1f} ms, "
        f"clipping {floor['clip_grad_s'] * 1e3:.1f} ms, fused AdamW "
        f"{floor['optimizer_step_s'] * 1e3:.1f} ms; ours takes {floor['ours_step_s'] * 1e3:.1f}"
        f" ms a step, {baseline['trainer']} {floor['baseline_step_s'] * 1e3:.1f} ms: no loop "
        f"doing this computation beats x{floor['ceiling_ratio']:.2f}"
    )

    import torch

    report = {
        "environment": {
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load,
        },
        "setup": setup
        | {
            "image_size": 64,
            "train_pairs": n_pairs,
            "precision": "fp32",
            "repeats": args.repeats,
            "timed": "data loading (ours: decode + tokenize; open_clip_train: get_data) to the "
            "end of the last step; excludes start-up, imports, model creation, checkpoint save",
        },
        "results": rows,
        "floor": floor,
        "summary": {
            "baseline": baseline["trainer"],
            "throughput_ratio_ours_over_open_clip_train": ratio,
            "peak_rss_ratio_ours_over_open_clip_train": rss_ratio,
            "ceiling_ratio": floor["ceiling_ratio"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Pre-training throughput and peak memory: our loop next to open_clip's own trainer (a script).

Both trainers fit the same CLIP config (``medran-tiny``, 64 px) on the same image-caption
pairs (the upstream train split of a freshly synthesized and prepared data root, ~640 pairs at
the default sizes) with the same global batch, epochs, AdamW hyper-parameters (lr, weight
decay, betas, eps), warmup + cosine schedule, gradient clipping, fp32 and torch thread count:

* ``ours``: ``medran.training.loop.train`` with ``ClipObjective`` (open_clip's ``ClipLoss``), as
  ``pipeline/pretrain.py`` calls it, minus MLflow: images are decoded once into a uint8 tensor.
* ``open_clip_train``: ``open_clip_train.main.main([...])`` with ``--dataset-type csv`` (PIL
  decode + train transforms per sample, in ``--workers`` DataLoader processes).

Each trainer runs in its own fresh subprocess, so the peak RSS (``ru_maxrss``) is its own.
Timed: from just before the data is loaded (ours: image decoding + tokenizing; open_clip_train:
``get_data``, i.e. CSV read and DataLoader set-up) to the end of the last optimizer step. Not
timed, for both: interpreter start-up, imports, model creation, and open_clip_train's final
checkpoint save. Throughput = images trained / timed seconds (same number of full batches for
both: the last partial batch is dropped).

    python benchmarks/pretrain_throughput.py  # writes reports/benchmarks/pretrain.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
MODEL = "medran-tiny"


def rss_mib() -> float:
    """Current resident set size of this process (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children (DataLoader
    workers), so a trainer's work counts wherever it runs."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_data(root: Path) -> Path:
    """A data root with default-size synthetic data, prepared as the pipeline prepares it."""
    from medran import layout
    from medran.params import PrepareDataParams, SynthesizeParams
    from medran.pipeline import prepare_data, synthesize

    sources = {
        "upstream": {"format": "rocov2_csv", "path": "raw/rocov2"},
        "targets": {"format": "medicat_jsonl", "path": "raw/medicat"},
        "cls": {"format": "chestxray14_csv", "path": "raw/chestxray14"},
        "vqa": {"format": "vqarad_json", "path": "raw/vqarad"},
    }
    synthesize.run(SynthesizeParams(), root / "raw")
    params = PrepareDataParams.model_validate({"image_size": 64, "sources": sources})
    prepare_data.run(params, root, root / layout.PREPARED, seed=0)
    return root / layout.PREPARED


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


# --- children: one trainer per process ---------------------------------------------------


def run_ours(args: argparse.Namespace) -> dict:
    import pandas as pd
    import torch

    from medran.models.factory import create_clip
    from medran.training.clip_objective import ClipObjective
    from medran.training.data import image_text_tensors
    from medran.training.loop import LoopConfig, make_accelerator, train

    torch.set_num_threads(args.threads)
    table = pd.read_csv(args.csv, sep="\t")
    accelerator = make_accelerator(cpu=True)
    clip = create_clip(MODEL, seed=args.seed)
    cfg = LoopConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.wd,
        warmup_steps=args.warmup,
        seed=args.seed,
        max_grad_norm=args.grad_clip,
    )
    objective = ClipObjective(clip.mean, clip.std, 0, 1)
    losses: list[float] = []
    rss_before = rss_mib()

    start, cpu_start = time.perf_counter(), cpu_seconds()
    paths = [Path(p) for p in table["filepath"]]
    dataset = image_text_tensors(paths, table["title"], clip.tokenizer(), clip.image_size)
    decoded = time.perf_counter()
    train(
        accelerator,
        clip.model,
        dataset,
        objective,
        cfg,
        on_step=lambda step, values: losses.append(values["loss"]),
    )
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "cpu_seconds": cpu_seconds() - cpu_start,
        "data_seconds": decoded - start,
        "steps": len(losses),
        "losses": losses,
        "rss_before_mib": rss_before,
    }


class _LossRecorder:
    """Wraps open_clip_train's loss to keep the per-step value (one float per step)."""

    def __init__(self, loss):
        self.loss, self.values = loss, []

    def __call__(self, **kwargs):
        out = self.loss(**kwargs)
        self.values.append(float(sum(out.values()).detach()))
        return out


def stand_in_webdataset() -> None:
    """``open_clip_train.data`` imports webdataset and braceexpand at module level for its
    webdataset reader; the csv reader never calls them and they are not in our lock, so empty
    modules stand in when they are not installed (the real ones are used when they are)."""
    import importlib.util
    import types

    missing = [m for m in ("webdataset", "braceexpand") if importlib.util.find_spec(m) is None]
    for name in missing:
        sys.modules[name] = types.ModuleType(name)
    if "webdataset" in missing:
        wds = sys.modules["webdataset"]
        wds.PipelineStage = type("PipelineStage", (), {})
        for sub, names in {
            "filters": ["_shuffle"],
            "tariterators": ["base_plus_ext", "url_opener", "tar_file_expander", "valid_sample"],
        }.items():
            module = types.ModuleType(f"webdataset.{sub}")
            for attribute in names:
                setattr(module, attribute, None)
            sys.modules[module.__name__] = module
            setattr(wds, sub, module)


def run_open_clip_train(args: argparse.Namespace) -> dict:
    import torch

    stand_in_webdataset()
    from open_clip_train import main as oc_main

    import medran.models.factory  # noqa: F401  registers medran-tiny with open_clip

    torch.set_num_threads(args.threads)
    marks: dict[str, float] = {}
    recorder: list[_LossRecorder] = []
    get_data, train_one_epoch, create_loss = (
        oc_main.get_data,
        oc_main.train_one_epoch,
        oc_main.create_loss,
    )

    def timed_get_data(*a, **k):
        marks["rss_before"] = rss_mib()
        marks["start"], marks["cpu_start"] = time.perf_counter(), cpu_seconds()
        data = get_data(*a, **k)
        marks["data"] = time.perf_counter()
        return data

    def timed_epoch(*a, **k):
        train_one_epoch(*a, **k)
        marks["end"], marks["cpu_end"] = time.perf_counter(), cpu_seconds()

    def recorded_loss(*a, **k):
        recorder.append(_LossRecorder(create_loss(*a, **k)))
        return recorder[0]

    oc_main.get_data, oc_main.train_one_epoch = timed_get_data, timed_epoch
    oc_main.create_loss = recorded_loss
    logs = Path(args.logs)
    argv = [
        "--model", MODEL,
        "--train-data", str(args.csv),
        "--dataset-type", "csv",
        "--csv-img-key", "filepath",
        "--csv-caption-key", "title",
        "--csv-separator", "\t",
        "--batch-size", str(args.batch_size),
        "--epochs", str(args.epochs),
        "--lr", str(args.lr),
        "--wd", str(args.wd),
        "--beta1", "0.9", "--beta2", "0.999", "--eps", "1e-8",  # torch AdamW defaults, as ours
        "--warmup", str(args.warmup),
        "--grad-clip-norm", str(args.grad_clip),
        "--precision", "fp32",
        "--device", "cpu",
        "--workers", str(args.workers),
        "--seed", str(args.seed),
        "--report-to", "",
        "--logs", str(logs),
        "--name", "bench",
        "--save-frequency", "0",  # only the final (small) checkpoint, after the timed span
        "--log-every-n-steps", "1000",
    ]  # fmt: skip
    if oc_main.main(argv) == -1:
        raise RuntimeError(f"open_clip_train refused to run; see {logs}")
    return {
        "seconds": marks["end"] - marks["start"],
        "cpu_seconds": marks["cpu_end"] - marks["cpu_start"],
        "data_seconds": marks["data"] - marks["start"],
        "steps": len(recorder[0].values),
        "losses": recorder[0].values,
        "rss_before_mib": marks["rss_before"],
        "workers_peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),
    }


def child(args: argparse.Namespace) -> None:
    runner = run_ours if args.child == "ours" else run_open_clip_train
    result = runner(args)
    result["peak_rss_mib"] = peak_rss_mib()
    Path(args.result).write_text(json.dumps(result))


# --- parent: data, the subprocesses, the table -------------------------------------------


def spawn(args: argparse.Namespace, trainer: str, csv: Path, work: Path, workers: int) -> dict:
    """One trainer in a fresh interpreter; returns its timings, peak RSS and loss curve."""
    result = work / "result.json"
    logs = tempfile.mkdtemp(prefix="open_clip_train-", dir=work)
    command = [
        sys.executable, str(HERE), "--child", trainer,
        "--csv", str(csv), "--result", str(result), "--logs", logs,
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--wd", str(args.wd), "--warmup", str(args.warmup),
        "--grad-clip", str(args.grad_clip), "--threads", str(args.threads),
        "--workers", str(workers), "--seed", str(args.seed),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{trainer} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(result.read_text())


def summarise(args: argparse.Namespace, name: str, workers: int, runs: list[dict]) -> dict:
    """Best (shortest) time of the repeats; the largest peak RSS; the loss curve of one run
    (the runs are seeded, so their curves agree)."""
    best = min(runs, key=lambda r: r["seconds"])
    losses = best["losses"]
    per_epoch = len(losses) // args.epochs
    images = len(losses) * args.batch_size
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
        "workers_peak_rss_mib": max(r.get("workers_peak_rss_mib", 0.0) for r in runs),
        "first_epoch_loss": sum(losses[:per_epoch]) / per_epoch,
        "last_epoch_loss": sum(losses[-per_epoch:]) / per_epoch,
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
    # child-process arguments
    parser.add_argument("--child", choices=["ours", "open_clip_train"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--logs", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        args.workers = args.workers[0]
        child(args)
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before the start; timings share the CPU")
    trainers = [("ours", "ours", 0)] + [
        (f"open_clip_train (workers={w})", "open_clip_train", w) for w in args.workers
    ]
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
        for _ in range(args.repeats):  # interleaved, so a slow spell hits every trainer
            for name, trainer, workers in trainers:
                runs[name].append(spawn(args, trainer, work / "train.csv", work, workers))
    rows = [summarise(args, name, workers, runs[name]) for name, _, workers in trainers]
    print_table(rows)
    baseline = max(rows[1:], key=lambda r: r["images_per_s"])
    ratio = rows[0]["images_per_s"] / baseline["images_per_s"]
    rss_ratio = rows[0]["peak_rss_mib"] / baseline["peak_rss_mib"]
    print(f"ours / {baseline['trainer']}: throughput x{ratio:.2f}, peak RSS x{rss_ratio:.2f}")

    import torch

    report = {
        "environment": {
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": load,
        },
        "setup": {
            "model": MODEL,
            "image_size": 64,
            "train_pairs": n_pairs,
            "global_batch_size": args.batch_size,
            "epochs": args.epochs,
            "lr": args.lr,
            "weight_decay": args.wd,
            "warmup_steps": args.warmup,
            "max_grad_norm": args.grad_clip,
            "precision": "fp32",
            "torch_threads": args.threads,
            "repeats": args.repeats,
            "timed": "data loading (ours: decode + tokenize; open_clip_train: get_data) to the "
            "end of the last step; excludes start-up, imports, model creation, checkpoint save",
        },
        "results": rows,
        "summary": {
            "baseline": baseline["trainer"],
            "throughput_ratio_ours_over_open_clip_train": ratio,
            "peak_rss_ratio_ours_over_open_clip_train": rss_ratio,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

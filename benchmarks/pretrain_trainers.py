"""The two trainers that ``pretrain_throughput.py`` compares, one per fresh process.

    python benchmarks/pretrain_trainers.py SETUP_JSON RESULT_JSON

``SETUP_JSON`` names the trainer (``ours`` or ``open_clip_train``; ``floor`` times the parts
of a step no loop avoids) and the shared settings; ``RESULT_JSON`` receives the timed seconds
(from just before the data is loaded to the end of the last step), CPU seconds, per-step
losses and peak RSS of this process and its children.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


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


def run_ours(setup: dict[str, Any]) -> dict:
    """``training.loop.train`` + ``ClipObjective`` as ``pipeline/pretrain.py`` uses them
    (without MLflow); images are decoded once into a uint8 tensor inside the timed span."""
    import pandas as pd
    import torch

    from medran.models.factory import create_clip
    from medran.training.clip_objective import ClipObjective
    from medran.training.data import image_text_tensors
    from medran.training.loop import LoopConfig, LoopHooks, make_accelerator, train

    torch.set_num_threads(setup["threads"])
    table = pd.read_csv(setup["csv"], sep="\t")
    accelerator = make_accelerator(cpu=True)
    clip = create_clip(setup["model"], seed=setup["seed"])
    cfg = LoopConfig(
        epochs=setup["epochs"],
        batch_size=setup["batch_size"],
        lr=setup["lr"],
        weight_decay=setup["weight_decay"],
        warmup_steps=setup["warmup_steps"],
        seed=setup["seed"],
        max_grad_norm=setup["max_grad_norm"],
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
        LoopHooks(on_step=lambda step, values: losses.append(values["loss"])),
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


def run_floor(setup: dict[str, Any]) -> dict:
    """The step's parts that no loop can avoid, at the same model, batch and threads, best of
    10 after warm-up: a forward and backward of the contrastive loss (on captions
    from the data and random pixels: the cost does not depend on their values), gradient
    clipping and the fused AdamW update. A step cannot be faster than their sum."""
    import pandas as pd
    import torch
    from attack_throughput import timed

    from medran.models.factory import create_clip
    from medran.training.clip_objective import ClipObjective
    from medran.training.loop import param_groups

    torch.set_num_threads(setup["threads"])
    clip, batch = create_clip(setup["model"], seed=setup["seed"]), setup["batch_size"]
    model = clip.model.train()
    images = torch.rand(batch, 3, clip.image_size, clip.image_size)
    captions = pd.read_csv(setup["csv"], sep="\t")["title"].tolist()[:batch]
    tokens = clip.tokenizer()(captions)
    objective = ClipObjective(clip.mean, clip.std, 0, 1)
    optimizer = torch.optim.AdamW(param_groups(model, setup["weight_decay"]), fused=True)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        objective(model, (images, tokens))["loss"].backward()

    def best_of(fn: Any) -> float:
        for _ in range(3):  # warm-up: allocator and oneDNN caches
            fn()
        return timed(fn, torch.device("cpu"), repeats=10)

    return {
        "forward_backward_s": best_of(forward_backward),
        "clip_grad_s": best_of(lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)),
        "optimizer_step_s": best_of(optimizer.step),
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


def run_open_clip_train(setup: dict[str, Any]) -> dict:
    """``open_clip_train.main.main(argv)``, timed by wrapping its ``get_data`` (start) and
    ``train_one_epoch`` (end); its loss is wrapped to record the per-step value."""
    import torch

    stand_in_webdataset()
    from open_clip_train import main as oc_main

    import medran.models.factory  # noqa: F401  registers medran-tiny with open_clip

    torch.set_num_threads(setup["threads"])
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
    logs = Path(setup["logs"])
    argv = [
        "--model", setup["model"],
        "--train-data", str(setup["csv"]),
        "--dataset-type", "csv",
        "--csv-img-key", "filepath",
        "--csv-caption-key", "title",
        "--csv-separator", "\t",
        "--batch-size", str(setup["batch_size"]),
        "--epochs", str(setup["epochs"]),
        "--lr", str(setup["lr"]),
        "--wd", str(setup["weight_decay"]),
        "--beta1", "0.9", "--beta2", "0.999", "--eps", "1e-8",  # torch AdamW defaults, as ours
        "--warmup", str(setup["warmup_steps"]),
        "--grad-clip-norm", str(setup["max_grad_norm"]),
        "--precision", "fp32",
        "--device", "cpu",
        "--workers", str(setup["workers"]),
        "--seed", str(setup["seed"]),
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
        "children_peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),
    }


def main() -> None:
    setup_path, result_path = map(Path, sys.argv[1:3])
    setup = json.loads(setup_path.read_text())
    runners = {"ours": run_ours, "open_clip_train": run_open_clip_train, "floor": run_floor}
    runner = runners[setup["trainer"]]
    result = runner(setup)
    result["peak_rss_mib"] = peak_rss_mib()
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

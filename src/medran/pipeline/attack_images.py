"""``attack_images``: MF-ii adversarial images for the upstream training pairs
(docs/architecture.md, "Attacks").

Everything is checked before any attack work: manifests, the pairing rule, every image that
will be read, the surrogate. The selected ids (the prefix of the seeded attack order that
the largest noise level uses) are cut into shards by index; shard i runs on Accelerate
process i % num_processes. A finished shard is its PNGs plus a small parquet file written
last and atomically, under a fingerprint of everything that determines its bytes, so a rerun
keeps the finished shards of its fingerprint (the DVC out is persistent and survives a kill)
and deletes the others. The main process then measures every saved PNG (distances and
surrogate similarities come from the files, never from the attack's floats) and writes
``manifest.parquet``, ``attack.json`` and the example figure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from medran import layout, startup
from medran.attacks.files import (
    check_images,
    examples_figure,
    load_images,
    measure_files,
    parquet_bytes,
    write_atomic,
)
from medran.attacks.mfii import MFII, quantize
from medran.attacks.pairing import pair_targets
from medran.attacks.pgd import Budget
from medran.attacks.selection import attack_order, n_replaced
from medran.attacks.shards import ShardStore, fingerprint, folder_sha256
from medran.contracts import AttackImagesPaths
from medran.data.manifest import ADV_IMAGE_COLUMNS, read_manifest
from medran.data.paths import resolve_under
from medran.devices import pick_device
from medran.errors import InputError
from medran.models.factory import load_local_dir
from medran.models.wrappers import ImageEncoder
from medran.params import AttackImagesParams, Params

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the bytes a shard produces change for the same inputs
MANIFEST, SUMMARY = "manifest.parquet", "attack.json"


@dataclass(frozen=True)
class Item:
    """One clean training pair to attack; paths are relative to the data root."""

    id: str
    rank: int
    clean_path: str
    clean_sha256: str
    target_id: str
    target_path: str
    target_sha256: str
    clean_body_part: str | None
    target_body_part: str | None


def plan(params: AttackImagesParams, data_root: Path) -> tuple[list[Item], int]:
    """The attacked items in rank order (pairing checked), and the number of train pairs."""
    prepared = data_root / layout.PREPARED
    upstream = read_manifest(prepared, "upstream").set_index("id", drop=False)
    targets = read_manifest(prepared, "targets").set_index("id", drop=False)
    train_ids = upstream.loc[upstream["split"] == "train", "id"].tolist()
    chosen = attack_order(train_ids, params.seed)[: n_replaced(params.max_fraction, len(train_ids))]
    if not chosen:
        raise InputError(
            f"attack_images.max_fraction = {params.max_fraction} selects no pair out of "
            f"{len(train_ids)} upstream train pair(s); raise it or add data"
        )
    pairs = pair_targets(
        upstream.loc[chosen, "caption"].to_dict(),
        targets["caption"].to_dict(),
        params.pairing,
        params.seed,
    )

    def image(frame: pd.DataFrame, item_id: str) -> tuple[str, str]:
        where = f"{data_root / layout.PREPARED} manifest ({item_id})"
        resolve_under(data_root / layout.PREPARED, frame.at[item_id, "image_path"], where)
        relative = (layout.PREPARED / frame.at[item_id, "image_path"]).as_posix()
        return relative, frame.at[item_id, "sha256"]

    items = []
    for rank, p in enumerate(pairs):
        clean, target = image(upstream, p.id), image(targets, p.target_id)
        parts = (p.clean_body_part, p.target_body_part)
        items.append(Item(p.id, rank, *clean, p.target_id, *target, *parts))
    return items, len(train_ids)


def work_fingerprint(params: AttackImagesParams, surrogate_sha: str, items: Sequence[Item]) -> str:
    """Everything that determines the shards' bytes (batch composition included)."""
    return fingerprint({
        "format": FORMAT,
        "params": params.model_dump(mode="json"),
        "surrogate": surrogate_sha,
        "pairs": [(i.id, i.clean_sha256, i.target_id, i.target_sha256) for i in items],
    })  # fmt: skip


class _Resize(nn.Module):
    """Differentiable resize to the surrogate's input size: the attack stays at file size."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear")


def _encoder(surrogate_dir: Path, image_size: tuple[int, int]) -> nn.Module:
    clip = load_local_dir(surrogate_dir)
    startup.ready()  # the model is loaded: work starts
    encoder: nn.Module = ImageEncoder(clip)
    if image_size != (clip.image_size, clip.image_size):
        log.info(
            "images are %s px, surrogate takes %d: resizing inside", image_size, clip.image_size
        )
        encoder = nn.Sequential(_Resize(clip.image_size), encoder)
    return encoder.eval().requires_grad_(False)


def _batch_seed(seed: int, shard: int, start: int) -> int:
    digest = hashlib.sha256(f"{seed}:{shard}:{start}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Work:
    """What every shard's attack shares."""

    params: AttackImagesParams
    data_root: Path
    attack: MFII
    store: ShardStore
    device: torch.device


def attack_shard(work: Work, shard: int, items: Sequence[Item], progress: tqdm) -> None:
    """Attack one shard batch by batch, save its PNGs, then record it as finished."""
    params, store, device = work.params, work.store, work.device
    rows = []
    for start in range(0, len(items), params.batch_size):
        batch = items[start : start + params.batch_size]
        clean = load_images([work.data_root / i.clean_path for i in batch]).to(device)
        target = load_images([work.data_root / i.target_path for i in batch]).to(device)
        work.attack.manual_seed(_batch_seed(params.seed, shard, start))
        adv = work.attack(clean.float().div_(255), target.float().div_(255))
        saved = quantize(adv, clean, params.eps).permute(0, 2, 3, 1).cpu().numpy()
        for item, pixels in zip(batch, saved, strict=True):
            rows.append((item.id, item.target_id, store.write_png(item.id, pixels)))
        progress.update(len(batch))
    store.finish(shard, rows)


def attack_all(accelerator: Accelerator, work: Work, items: Sequence[Item]) -> dict[str, float]:
    """Run this process's unfinished shards; return counts over all processes."""
    params, store = work.params, work.store
    shards = [items[s : s + params.shard_size] for s in range(0, len(items), params.shard_size)]
    mine = range(accelerator.process_index, len(shards), accelerator.num_processes)
    todo = [k for k in mine if not store.done(k, [i.id for i in shards[k]])]
    n_images = sum(len(shards[k]) for k in todo)
    started = time.perf_counter()
    hide = None if accelerator.is_main_process else True  # None: shown on a terminal only
    with tqdm(total=n_images, desc="attack_images", unit="img", disable=hide) as bar:
        for k in todo:
            attack_shard(work, k, shards[k], bar)
    local = [len(todo), len(mine) - len(todo), n_images * params.steps]
    local.append(time.perf_counter() - started)
    totals = accelerator.gather(
        torch.tensor([local], dtype=torch.float64, device=accelerator.device)
    )
    computed, reused, image_steps = totals[:, :3].sum(dim=0).tolist()
    seconds = float(totals[:, 3].max())
    counts = {"shards": float(len(shards)), "shards_computed": computed, "shards_reused": reused}
    if image_steps:
        counts |= {"attack_seconds": seconds, "throughput_image_steps_per_s": image_steps / seconds}
    return counts


def manifest(items: Sequence[Item], encoder: nn.Module, work: Work) -> pd.DataFrame:
    """One row per item, in rank order; every number is measured on the saved PNG files."""
    params, store, data_root = work.params, work.store, work.data_root
    measured = measure_files(
        [store.png(i.id) for i in items],
        [data_root / i.clean_path for i in items],
        [data_root / i.target_path for i in items],
        encoder,
        params.batch_size,
        work.device,
    )
    frame = pd.DataFrame({
        "id": [i.id for i in items],
        "rank": [i.rank for i in items],
        "adv_image_path": [store.png(i.id).relative_to(data_root).as_posix() for i in items],
        "clean_image_path": [i.clean_path for i in items],
        "target_id": [i.target_id for i in items],
        "target_image_path": [i.target_path for i in items],
        "clean_body_part": [i.clean_body_part for i in items],
        "target_body_part": [i.target_body_part for i in items],
        "eps": params.eps,
        "step_size": params.step_size,
        "steps": params.steps,
        **measured,
    })  # fmt: skip
    frame["success"] = frame["cos_target"] > frame["cos_clean"]
    return frame.loc[:, list(ADV_IMAGE_COLUMNS)]


def summarise(frame: pd.DataFrame, n_train: int) -> dict[str, float]:
    """Attack statistics as flat floats (PSNR over the images that changed)."""
    changed = frame["psnr"][np.isfinite(frame["psnr"])]
    stats = {"attacked": float(len(frame)), "train": float(n_train)}
    stats["success_rate"] = float(frame["success"].mean())
    for column in ("cos_target", "cos_clean", "cos_clean_target", "linf", "l2"):
        stats[f"{column}_mean"] = float(frame[column].mean())
    stats["linf_max"] = float(frame["linf"].max())
    if len(changed):
        stats["psnr_mean"] = float(changed.mean())
    return stats


@contextmanager
def _deterministic() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def record(
    frame: pd.DataFrame,
    out_dir: Path,
    params: AttackImagesParams,
    surrogate: dict[str, str],
    n_train: int,
    image_size: tuple[int, int],
) -> None:
    """Write the manifest and ``attack.json`` (no timestamps: reruns give the same bytes)."""
    write_atomic(out_dir / MANIFEST, parquet_bytes(frame))
    summary = {
        "params": params.model_dump(mode="json"),
        "surrogate": surrogate,
        "image_size": list(image_size),
        "counts": {
            "train": n_train,
            "attacked": len(frame),
            "shards": -(-len(frame) // params.shard_size),
            "success": int(frame["success"].sum()),
        },
    }
    write_atomic(out_dir / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())


@dataclass(frozen=True)
class Inputs:
    """Everything checked before any attack work."""

    items: list[Item]
    n_train: int
    image_size: tuple[int, int]
    encoder: nn.Module
    surrogate: dict[str, str]  # its path relative to the data root, and its sha256
    out_dir: Path  # inside the data root


def check_inputs(params: AttackImagesParams, paths: AttackImagesPaths) -> Inputs:
    """Manifests, pairing, every image that will be read and the surrogate, before any work."""
    data_root, surrogate_dir = Path(paths.data), Path(paths.surrogate)
    if not Path(paths.out).resolve().is_relative_to(data_root.resolve()):
        raise InputError(f"out dir {paths.out} must be inside the data root {data_root}")
    out_dir = data_root / Path(paths.out).resolve().relative_to(data_root.resolve())
    items, n_train = plan(params, data_root)
    files = {i.clean_path for i in items} | {i.target_path for i in items}
    image_size = check_images([data_root / f for f in sorted(files)])
    encoder = _encoder(surrogate_dir, image_size)
    surrogate = {"path": os.path.relpath(surrogate_dir, data_root)}
    surrogate["sha256"] = folder_sha256(surrogate_dir)
    return Inputs(items, n_train, image_size, encoder, surrogate, out_dir)


def run(params: Params, *, paths: AttackImagesPaths) -> dict[str, float]:
    """Attack, measure and record; return flat metrics (empty on non-main processes)."""
    p, data_root = params.attack_images, Path(paths.data)
    found = check_inputs(p, paths)
    store = ShardStore(found.out_dir, work_fingerprint(p, found.surrogate["sha256"], found.items))
    log.info("attacking %d of %d train pairs into %s", len(found.items), found.n_train, store.dir)

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    from accelerate import Accelerator

    from medran.tracking import stage_run

    accelerator = Accelerator(cpu=pick_device() == "cpu")
    main = accelerator.is_main_process
    found.encoder.to(accelerator.device)
    budget = Budget(p.eps / 255, p.step_size / 255, steps=p.steps, random_start=p.random_start)
    attack = MFII(found.encoder, budget)
    work = Work(p, data_root, attack, store, accelerator.device)
    tags = {"seed": p.seed, "surrogate_sha256": found.surrogate["sha256"]}
    inputs = {"prepared": data_root / layout.PREPARED, "surrogate": Path(paths.surrogate)}
    out_dir = found.out_dir
    with stage_run("attack_images", params.experiment, p, inputs, tags, main) as tracker:
        if main:  # outputs that would make a partial folder look finished go first
            store.reset([out_dir / MANIFEST, out_dir / SUMMARY])
        accelerator.wait_for_everyone()
        with _deterministic():
            counts = attack_all(accelerator, work, found.items)
        accelerator.wait_for_everyone()
        if not main:
            return {}
        frame = manifest(found.items, found.encoder, work)
        store.prune(frame["id"])
        record(frame, out_dir, p, found.surrogate, found.n_train, found.image_size)
        metrics = summarise(frame, found.n_train) | counts
        tracker.log_metrics(metrics)
        tracker.log_artifact(out_dir / SUMMARY)
        tracker.log_artifact(examples_figure(frame, data_root, p.eps, Path(paths.figure)))
    log.info("success rate %.3f over %d images", metrics["success_rate"], len(frame))
    return metrics

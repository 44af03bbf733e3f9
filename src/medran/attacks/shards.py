"""Resumable attack output: finished shards are kept, keyed by a fingerprint of their inputs.

Layout under an attack's output folder::

    png/<id>.png                               one lossless PNG per attacked id
    shards/<fingerprint>/shard-00000.parquet   (id, target_id, adv_sha256) of a finished shard

A shard's parquet file is written last and atomically, so its presence (with PNGs whose
hashes match) means the shard is finished. The fingerprint hashes everything that
determines a shard's bytes; a run deletes the shards of any other fingerprint and reuses
its own, so a killed run resumes where it stopped and a changed input recomputes everything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medran.attacks.files import parquet_bytes, png_bytes, write_atomic

SHARD_COLUMNS = ("id", "target_id", "adv_sha256")


def fingerprint(content: Any) -> str:
    """A short hash of a JSON-able description of the work."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_sha256(folder: Path) -> str:
    """sha256 over a folder's files (names and contents), e.g. a model's config + weights."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    listing = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


class ShardStore:
    """The PNGs and shard records of one attack output folder, for one fingerprint."""

    def __init__(self, out_dir: Path, fingerprint: str):
        self.png_dir = out_dir / "png"
        self.shard_root = out_dir / "shards"
        self.dir = self.shard_root / fingerprint

    def reset(self, outputs: Iterable[Path] = ()) -> None:
        """Drop other fingerprints' shards, half-written files and ``outputs`` (main process)."""
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.shard_root.iterdir():
            if stale != self.dir:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        for leftover in [*outputs, *self.png_dir.glob(".*.tmp"), *self.dir.glob(".*.tmp")]:
            leftover.unlink(missing_ok=True)

    def path(self, shard: int) -> Path:
        return self.dir / f"shard-{shard:05d}.parquet"

    def png(self, item_id: str) -> Path:
        return self.png_dir / f"{item_id}.png"

    def done(self, shard: int, ids: Sequence[str]) -> bool:
        """True if the shard is recorded for exactly ``ids`` and every PNG matches its hash."""
        if not self.path(shard).is_file():
            return False
        record = pd.read_parquet(self.path(shard))
        if record["id"].tolist() != list(ids):
            return False
        return all(
            self.png(item_id).is_file() and sha256_file(self.png(item_id)) == digest
            for item_id, digest in zip(record["id"], record["adv_sha256"], strict=True)
        )

    def write_png(self, item_id: str, pixels: np.ndarray) -> str:
        """Save one (H, W, 3) uint8 image; return the sha256 of the file's bytes."""
        data = png_bytes(pixels)
        write_atomic(self.png(item_id), data)
        return hashlib.sha256(data).hexdigest()

    def finish(self, shard: int, rows: Sequence[tuple[str, str, str]]) -> None:
        """Record a finished shard: ``(id, target_id, adv_sha256)`` per item, in order."""
        frame = pd.DataFrame(list(rows), columns=list(SHARD_COLUMNS))
        write_atomic(self.path(shard), parquet_bytes(frame))

    def prune(self, keep_ids: Iterable[str]) -> None:
        """Delete PNGs of ids that are no longer attacked (left by an earlier selection)."""
        keep = {f"{i}.png" for i in keep_ids}
        for png in self.png_dir.iterdir():
            if png.name not in keep:
                png.unlink()

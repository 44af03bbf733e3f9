"""Lineage digests: the git commit, and the DVC md5 of a stage's inputs (read from
``dvc.lock`` or a ``.dvc`` file, or computed the way DVC computes it). MLflow runs carry them
as tags, and pre-training fingerprints its data with them."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from medran.errors import InputError


def git_commit(cwd: Path | None = None) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return result.stdout.strip()


def dvc_md5(path: Path, project_root: Path | None = None) -> str:
    """The DVC md5 of ``path``: from ``dvc.lock`` (stage outputs) or ``<path>.dvc`` (added
    data); computed the same way for paths DVC does not track yet (e.g. in tests)."""
    root = (project_root or Path.cwd()).resolve()
    path = Path(path).resolve()
    relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else None
    lock = root / "dvc.lock"
    if relative and lock.is_file():
        stat = lock.stat()
        md5 = _locked_md5s(str(lock), stat.st_mtime_ns, stat.st_size).get(relative)
        if md5:
            return md5
    dvc_file = path.with_name(path.name + ".dvc")
    if dvc_file.is_file():
        outs = (_load_yaml(dvc_file.read_text()) or {}).get("outs", [])
        if outs and "md5" in outs[0]:
            return outs[0]["md5"]
    return computed_md5(path)


@functools.lru_cache(maxsize=4)
def _locked_md5s(lock: str, mtime_ns: int, size: int) -> dict[str, str]:
    """Every stage output's md5 in ``dvc.lock``, parsed once per version of the file (with
    90 stages it is large, and the pure-Python YAML parser takes seconds on it)."""
    stages = (_load_yaml(Path(lock).read_text()) or {}).get("stages", {})
    return {
        out["path"]: out["md5"]
        for stage in stages.values()
        for out in stage.get("outs", [])
        if "path" in out and "md5" in out
    }


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def computed_md5(path: Path) -> str:
    """DVC's scheme: md5 of a file, or for a folder md5 of its sorted (relpath, md5) listing."""
    if path.is_file():
        return _file_md5(path)
    if not path.is_dir():
        raise InputError(f"input {path} does not exist")
    entries = [
        {"md5": _file_md5(p), "relpath": p.relative_to(path).as_posix()}
        for p in sorted(path.rglob("*"))
        if p.is_file()
    ]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

"""Output folders that appear whole or not at all.

A stage builds its output in a temporary sibling folder and swaps it in only when the
folder is complete, so a crash or a bad input never leaves a partial output that a later
stage could read, and never destroys the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def replace_dir(target: Path, *, enabled: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target`` (``.<name>.tmp``) to build the output
    in; when the body returns, the folder replaces ``target``.

    If the body raises, the temporary folder is deleted and ``target`` is left as it was.
    ``enabled=False`` (a non-main process, which writes nothing) yields the same path but
    neither creates, deletes nor swaps anything.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    if not enabled:
        yield tmp
        return
    _remove(tmp)  # left by a killed run
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    swap(tmp, target)


def swap(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an old ``target`` is moved aside first, then deleted."""
    if not target.exists() and not target.is_symlink():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    _remove(old)
    os.replace(target, old)
    os.replace(new, target)
    _remove(old)


def _remove(path: Path) -> None:
    """Delete a folder, file or link at ``path`` if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: Path, data: Any) -> None:
    """Indented, sorted JSON (stable diffs for ``dvc metrics``); NaN is refused, not written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")

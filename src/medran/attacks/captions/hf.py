"""Shared helpers for the transformers backends: resolve a model name, load it or fail clearly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from medran.errors import InputError

T = TypeVar("T")


def resolve_model(name: str, key: str) -> str:
    """A local folder (made absolute) or a hub id; a path-like name that is missing fails.

    ``key`` is the params key that named the model, for the message.
    """
    if not name:
        raise InputError(f"{key} is empty; name a local model folder or a hub id")
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    # "org/repo" or "repo" may be a hub id; anything else can only be a (missing) folder.
    looks_local = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1
    if path.exists() or looks_local:
        raise InputError(f"{key} = {name!r}: the folder {path} does not exist")
    return name


def load(what: str, name: str, key: str, loader: Callable[[], T]) -> T:
    """Call ``loader`` and turn transformers' loading errors into one clear InputError."""
    try:
        return loader()
    except (OSError, ValueError, KeyError, TypeError) as e:
        where = "folder" if Path(name).is_dir() else "hub id (offline or not found?)"
        raise InputError(f"{key} = {name!r} ({where}) cannot be loaded as {what}: {e}") from e


def device() -> str:
    from medran.devices import pick_device

    return pick_device()

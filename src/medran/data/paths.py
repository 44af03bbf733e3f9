"""Path confinement: a path read from a data file must not escape its data root."""

from __future__ import annotations

from pathlib import Path

from medran.data.errors import DataError


def resolve_under(root: Path, relative: str, where: str) -> Path:
    """Return ``root / relative`` resolved, or raise if it leaves ``root``.

    ``where`` names the file and row the path came from, for the error message.
    """
    if not relative or Path(relative).is_absolute():
        raise DataError(f"{where}: image path {relative!r} must be relative to {root}")
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise DataError(f"{where}: image path {relative!r} escapes the data root {root}")
    return path

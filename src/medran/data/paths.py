"""Path confinement: a path read from a data file must not escape its data root.

Every consumer of a manifest path goes through :func:`resolve_under` (or :func:`resolve_all`).
The check is lexical: a relative POSIX path with no ``..`` part. Symlinks inside the root are
followed, not resolved first: DVC's ``cache.type symlink`` checks data out as links into
``.dvc/cache``, and shared dataset folders are often linked in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from medran.data.errors import DataError


def confined(relative: Any) -> bool:
    """A non-empty relative POSIX path without '..' parts or backslashes."""
    if not isinstance(relative, str) or not relative or "\\" in relative:
        return False
    path = PurePosixPath(relative)
    return not path.is_absolute() and ".." not in path.parts


def resolve_under(root: Path, relative: Any, where: str) -> Path:
    """``root / relative``, or a :class:`DataError` naming ``where`` (the file and row the path
    came from) if the path is not :func:`confined`."""
    if not confined(relative):
        raise DataError(
            f"{where}: image path {relative!r} escapes {root}: it must be a relative path "
            "inside it, without a leading '/', '..' parts or backslashes"
        )
    return Path(root) / relative


def resolve_all(root: Path, relatives: Iterable[Any], where: str) -> list[Path]:
    """:func:`resolve_under` for every path of a manifest column."""
    return [resolve_under(root, relative, where) for relative in relatives]

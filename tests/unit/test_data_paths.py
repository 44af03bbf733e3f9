"""Manifest paths stay under their data root, checked without resolving links."""

from __future__ import annotations

from pathlib import Path

import pytest

from medran.data.errors import DataError
from medran.data.paths import confined, resolve_all, resolve_under


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x.png", "images/../../x.png", "images\\x.png", "", None, 3]
)
def test_paths_that_leave_the_root_or_are_not_paths_are_refused(path: object) -> None:
    assert not confined(path)
    with pytest.raises(DataError, match=r"manifest\.parquet \(row-7\): image path .* escapes"):
        resolve_under(Path("/data"), path, "manifest.parquet (row-7)")


@pytest.mark.parametrize("path", ["x.png", "images/upstream/a.png", "./images/a.png"])
def test_relative_paths_inside_the_root_resolve_under_it(path: str) -> None:
    assert confined(path)
    assert resolve_under(Path("/data"), path, "m") == Path("/data") / path


def test_a_link_into_a_cache_outside_the_root_is_followed(tmp_path: Path) -> None:
    """DVC's ``cache.type symlink`` checks data out as links into ``.dvc/cache``."""
    cache, root = tmp_path / "cache", tmp_path / "data"
    (cache / "ab").mkdir(parents=True)
    (cache / "ab" / "cdef").write_bytes(b"png bytes")
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").symlink_to(cache / "ab" / "cdef")
    (path,) = resolve_all(root, ["images/a.png"], "manifest")
    assert path.read_bytes() == b"png bytes"

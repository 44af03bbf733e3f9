"""``replace_dir``: an output folder appears whole, and a failure leaves the old one."""

from __future__ import annotations

from pathlib import Path

import pytest

from medran.fsutil import replace_dir


def test_new_folder_replaces_the_old_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with replace_dir(out) as tmp:
        assert tmp.is_dir() and not list(tmp.iterdir()) and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
        assert (out / "stale.txt").is_file()  # untouched until the body returns
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_keeps_the_old_folder_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    (out / "earlier.txt").write_text("earlier")
    with pytest.raises(KeyboardInterrupt), replace_dir(out) as tmp:
        (tmp / "partial.txt").write_text("partial")
        raise KeyboardInterrupt
    assert sorted(p.name for p in out.iterdir()) == ["earlier.txt"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_missing_parent_a_link_and_a_leftover_temporary_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "out"
    with replace_dir(out) as tmp:
        (tmp / "x").write_text("1")
    assert (out / "x").read_text() == "1"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)  # e.g. a DVC output linked from the cache
    (tmp_path / ".link.tmp").mkdir()  # left by a killed run
    (tmp_path / ".link.tmp" / "junk").write_text("junk")
    with replace_dir(link) as tmp:
        (tmp / "y").write_text("2")
    assert not link.is_symlink() and sorted(p.name for p in link.iterdir()) == ["y"]
    assert elsewhere.is_dir()  # the link's target is not deleted


def test_disabled_yields_the_path_and_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with replace_dir(out, enabled=False) as tmp:
        assert not tmp.exists()
    assert not out.exists()

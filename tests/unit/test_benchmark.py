"""The pipeline benchmark attributes wall time and memory to the stage that used them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from medran.benchmark import fresh_copy, measure

# Two "stages" in DVC's words: the second holds 300 MB for a while, the first nothing.
FAKE_REPRO = """
import time
print("Running stage 'small':", flush=True)
time.sleep(1.0)
print("Running stage 'big':", flush=True)
block = bytearray(300 * 1024 * 1024)
block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
time.sleep(1.5)
"""


def test_measure_attributes_time_and_memory_to_stages(tmp_path: Path) -> None:
    result = measure([sys.executable, "-c", FAKE_REPRO], tmp_path, interval=0.05)
    assert result["returncode"] == 0
    small, big = result["stages"]["small"], result["stages"]["big"]
    assert 0.9 < small["wall_s"] < 3.0
    assert 1.4 < big["wall_s"] < 4.0
    assert big["peak_rss_mb"] > small["peak_rss_mb"] + 250
    assert result["peak_rss_mb"] >= big["peak_rss_mb"]
    assert result["total_wall_s"] >= small["wall_s"] + big["wall_s"] - 0.1


def test_fresh_copy_has_tracked_and_new_files_but_not_ignored_ones(tmp_path: Path) -> None:
    project, copy = tmp_path / "project", tmp_path / "copy"
    project.mkdir()
    copy.mkdir()
    run = lambda *a: subprocess.run(a, cwd=project, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q")
    (project / ".gitignore").write_text("/data/\n")
    (project / "tracked.txt").write_text("a")
    run("git", "add", ".")
    (project / "new.txt").write_text("b")
    (project / "data").mkdir()
    (project / "data" / "big.bin").write_text("c")
    fresh_copy(project, copy)
    assert sorted(p.name for p in copy.iterdir()) == [
        ".git",
        ".gitignore",
        "new.txt",
        "tracked.txt",
    ]

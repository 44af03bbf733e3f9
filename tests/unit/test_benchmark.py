"""The pipeline benchmark attributes wall time and memory to the stage that used them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from medran.benchmark import fresh_copy, measure
from medran.startup import PREFIX, REPORT, STARTED

# Two "stages" in DVC's words: the second holds 300 MB for a while, the first nothing.
FAKE_REPRO = """
import sys, time
print("Running stage 'small':", flush=True)
print("medran-startup: 0.25", file=sys.stderr, flush=True)  # the runner's, after imports
print("medran-startup: 0.50", file=sys.stderr, flush=True)  # the stage's, after its model
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
    # Start-up: a stage's last report; none for a stage that reports nothing.
    assert (small["startup_s"], big["startup_s"]) == (0.5, None)
    assert abs(result["startup_fraction"] - 0.5 / result["total_wall_s"]) < 0.01


def test_a_stage_reports_its_startup_only_when_asked() -> None:
    def stderr(source: str, **extra: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in (REPORT, STARTED, "RANK")}
        command = [sys.executable, "-c", source]
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env | extra)
        return done.stderr

    code = "from medran import startup; startup.begin(); startup.ready()"
    assert stderr(code) == ""
    line = stderr(code, **{REPORT: "1"})
    assert line.startswith(PREFIX)
    assert 0.0 < float(line.removeprefix(PREFIX)) < 60.0  # the interpreter's start, imports
    assert stderr(code, **{REPORT: "1", "RANK": "1"}) == ""  # only the main process
    slow = "import time; time.sleep(1.5); " + code  # the clock starts with the process
    assert 1.5 <= float(stderr(slow, **{REPORT: "1"}).removeprefix(PREFIX)) < 10.0


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

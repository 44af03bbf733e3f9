"""Run budget of the whole pipeline: per-stage wall time and peak memory of one ``dvc repro``.

``python -m medran.benchmark`` copies the git-tracked project into a fresh folder (no data, no
DVC cache, no MLflow store), runs ``dvc repro`` there from nothing with this environment's
tools, and writes ``reports/benchmarks/pipeline.json`` in the project::

    {"total_wall_s": ..., "peak_rss_mb": ..., "stages": {"synthesize": {"wall_s": ...,
     "peak_rss_mb": ...}, ...}, ...}

A stage's time runs from DVC's ``Running stage`` line to the next one, so it includes DVC's
own hashing and lock writing for it. Its ``startup_s`` is the time from its process's start to
its first unit of work (imports, params, model load; ``medran.startup``), and
``startup_fraction`` the sum over stages divided by the whole run. Memory is the summed
resident set of DVC and every process below it, sampled every ``--interval`` seconds: pages
shared between processes count once per process, so it errs high.

After the run, ``noop`` times ``dvc status`` and a ``dvc repro`` with nothing to do on the
finished tree, interleaved, best of ``--repeats``: ``noop.ratio`` is repro over status.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

from medran import startup as startup_marks
from medran.lineage import git_commit
from medran.params import deep_merge, read_yaml

STAGE_LINE = re.compile(r"Running stage '([^']+)'")
MB = 1024 * 1024


class TreeSampler(threading.Thread):
    """Records (time, summed RSS in MB) of a process and its descendants until stopped."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def rss_mb(self) -> float:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended between listing and reading
        return total / MB

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.perf_counter(), self.rss_mb()))
            self.done.wait(self.interval)

    def peak(self, begin: float, end: float) -> float:
        times = [t for t, _ in self.samples]
        inside = self.samples[bisect.bisect_left(times, begin) : bisect.bisect_right(times, end)]
        return max((rss for _, rss in inside), default=0.0)


def measure(
    command: list[str], cwd: Path, interval: float = 0.25, env: dict[str, str] | None = None
) -> dict:
    """Run ``command`` in ``cwd``, echoing its output; wall time and peak RSS per DVC stage."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    sampler = TreeSampler(process.pid, interval)
    sampler.start()
    starts: list[tuple[str, float]] = []
    startup: dict[str, float] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(startup_marks.PREFIX):  # the stage's own report, not its log
            if starts:
                startup[starts[-1][0]] = float(line.removeprefix(startup_marks.PREFIX))
            continue
        sys.stdout.write(line)
        if match := STAGE_LINE.search(line):
            starts.append((match.group(1), time.perf_counter()))
    returncode = process.wait()
    end = time.perf_counter()
    sampler.done.set()
    sampler.join()

    stages = {}
    for (name, begin), (_, until) in zip(starts, [*starts[1:], ("", end)], strict=True):
        stages[name] = {
            "wall_s": round(until - begin, 2),
            "startup_s": startup.get(name),
            "peak_rss_mb": round(sampler.peak(begin, until), 1),
        }
    total = end - start
    return {
        "returncode": returncode,
        "total_wall_s": round(total, 1),
        "startup_s": round(sum(startup.values()), 1),
        "startup_fraction": round(sum(startup.values()) / total, 4) if total else None,
        "peak_rss_mb": round(sampler.peak(start, end), 1),
        "stages": stages,
    }


def noop(cwd: Path, env: dict[str, str], repeats: int) -> dict:
    """Best-of-``repeats`` seconds of ``dvc status`` and of a ``dvc repro`` with nothing to
    do, run alternately on the same tree, and their ratio."""
    best = {"status": float("inf"), "repro": float("inf")}
    for _ in range(repeats):
        for name in best:
            begin = time.perf_counter()
            subprocess.run(["dvc", name], cwd=cwd, env=env, capture_output=True, check=True)
            best[name] = min(best[name], time.perf_counter() - begin)
    return {
        "status_s": round(best["status"], 2),
        "repro_s": round(best["repro"], 2),
        "ratio": round(best["repro"] / best["status"], 2),
        "repeats": repeats,
    }


def fresh_copy(project: Path, target: Path) -> None:
    """The project's files that git tracks or would track (what a fresh clone of it has), as a
    new git + DVC repo."""
    listed = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listed, cwd=project, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = project / os.fsdecode(name)
        if source.is_file():
            (target / source.relative_to(project)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.relative_to(project))
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)


def apply_overrides(params_file: Path, overrides: Path) -> None:
    if not overrides.is_file():
        sys.exit(f"benchmark: --overrides {overrides} is not a file")
    merged = deep_merge(read_yaml(params_file), read_yaml(overrides))
    params_file.write_text(yaml.safe_dump(merged, sort_keys=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="medran benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/pipeline.json"))
    parser.add_argument("--workdir", type=Path, help="run here instead of a temporary folder")
    parser.add_argument(
        "--overrides", type=Path, help="a preset merged over params.yaml, e.g. configs/ci.yaml"
    )
    parser.add_argument("--interval", type=float, default=0.25, help="memory sampling, s")
    parser.add_argument("--repeats", type=int, default=3, help="of the no-op timings")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    with tempfile.TemporaryDirectory(prefix="medran-benchmark-") as tmp:
        workdir = (args.workdir or Path(tmp) / "project").resolve()
        if workdir.exists() and any(workdir.iterdir()):
            sys.exit(f"benchmark: --workdir {workdir} is not empty; give an empty or new folder")
        workdir.mkdir(parents=True, exist_ok=True)
        fresh_copy(project, workdir)
        if args.overrides:
            apply_overrides(workdir / "params.yaml", project / args.overrides)
        # This environment's dvc and python, as `make` puts them first on PATH.
        tools = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
        result = measure(
            ["dvc", "repro"], workdir, args.interval, env | {startup_marks.REPORT: "1"}
        )
        if result["returncode"] == 0:
            result["noop"] = noop(workdir, env, args.repeats)
    result |= {
        "command": "dvc repro (fresh copy of the git-tracked project, empty DVC cache)",
        "overrides": str(args.overrides) if args.overrides else None,
        "git_commit": git_commit(project),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = project / args.out if not args.out.is_absolute() else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"benchmark: {result['total_wall_s']:.0f} s, peak {result['peak_rss_mb']:.0f} MB, "
        f"{len(result['stages'])} stages, startup_fraction {result['startup_fraction']}, "
        f"no-op repro / status {result.get('noop', {}).get('ratio')} -> {out}"
    )
    if result["returncode"] != 0:
        sys.exit(f"benchmark: dvc repro failed with exit status {result['returncode']}")


if __name__ == "__main__":
    main()

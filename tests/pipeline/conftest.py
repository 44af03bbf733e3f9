"""A real git + DVC repository in a temporary folder, holding this project's pipeline.

The pipeline tier never runs ``dvc repro`` in the checkout: it copies ``dvc.yaml``, the
stage scripts and the library sources (DVC hashes them as deps) into ``tmp_path``, writes
``params.yaml`` with the CI-scale overrides of ``configs/ci.yaml``, and runs DVC there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from medran.params import deep_merge

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("dvc.yaml", "stages", "src", "configs", ".dvcignore")


def ci_params() -> dict[str, Any]:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return deep_merge(base, yaml.safe_load((ROOT / "configs" / "ci.yaml").read_text()))


class Repo:
    """A temporary DVC project; ``run`` executes a command there with the project's venv."""

    def __init__(self, path: Path):
        self.path = path
        # Each repo logs to its own store (mlflow.db at its root): mlflow.set_tracking_uri in
        # this process, which a test uses to read a store, also exports MLFLOW_TRACKING_URI.
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")
        }
        self.env = {
            **inherited,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "MEDRAN_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, cwd=self.path, env=self.env, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def set_params(self, params: dict[str, Any]) -> None:
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def repro(self, *targets: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("dvc", "repro", *targets, check=check)

    def lock(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "dvc.lock").read_text())


def make_repo(path: Path) -> Repo:
    path.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, path / name)
    repo = Repo(path)
    repo.set_params(ci_params())
    repo.run("git", "init", "-q")
    repo.run("git", "config", "user.email", "ci@medran.test")
    repo.run("git", "config", "user.name", "medran ci")
    repo.run("dvc", "init", "-q")
    repo.run("dvc", "config", "core.analytics", "false")
    shutil.copytree(ROOT / ".dvc" / "plots", path / ".dvc" / "plots")  # the plot templates
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-q", "-m", "pipeline under test")
    return repo


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """The CI-scale pipeline, reproduced once and shared by the pipeline tests (read-only)."""
    repo = make_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    repo.repro()
    return repo


@pytest.fixture
def repo_copy(built_repo: Repo, tmp_path: Path) -> Repo:
    """A private copy of the reproduced pipeline that a test may change (cache included)."""
    target = tmp_path / "repo"
    shutil.copytree(built_repo.path, target, symlinks=True)
    return Repo(target)

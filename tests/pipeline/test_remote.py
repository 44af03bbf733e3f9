"""A DVC remote carries the pipeline's data and models to another clone, as README "Share data
and models" shows: ``dvc push`` to a local-path remote, then ``git clone`` and ``dvc pull``."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest

from tests.pipeline.conftest import Repo

pytestmark = pytest.mark.slow


def test_push_to_a_local_remote_and_pull_into_a_fresh_clone(
    repo_copy: Repo, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    repo_copy.run("dvc", "remote", "add", "--default", "storage", str(remote))
    (repo_copy.path / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n")
    repo_copy.run("git", "add", "-A")
    repo_copy.run("git", "commit", "-q", "-m", "results and the remote")
    repo_copy.run("dvc", "push")
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"

    clone = Repo(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", str(repo_copy.path), str(clone.path)], check=True)
    models = sorted((repo_copy.path / "data" / "models").rglob("*.safetensors"))
    assert models and not any((clone.path / m.relative_to(repo_copy.path)).exists() for m in models)
    clone.run("dvc", "pull")
    status = clone.run("dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout, status.stdout
    for model in models:  # the pre-trained and every fine-tuned model
        pulled = clone.path / model.relative_to(repo_copy.path)
        assert filecmp.cmp(model, pulled, shallow=False), pulled

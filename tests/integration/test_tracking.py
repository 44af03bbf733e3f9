"""MLflow lineage helpers against a real SQLite store and a real DVC repository."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from pydantic import BaseModel

from medran.errors import InputError
from medran.tracking import computed_md5, dvc_md5, flatten, stage_run


class Inner(BaseModel):
    eps: int = 8


class Outer(BaseModel):
    inner: Inner = Inner()
    levels: list[float] = [0.0, 0.1]


def test_flatten_nested_models_and_lists() -> None:
    assert flatten(Outer()) == {"inner.eps": "8", "levels": "[0.0, 0.1]"}


def test_computed_md5_matches_dvc(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.txt").write_text("a")
    (data / "b.bin").write_bytes(b"\x00\x01")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "data"]):
        subprocess.run(args, cwd=tmp_path, env=env, check=True)
    tracked = dvc_md5(data, project_root=tmp_path)  # read from data.dvc
    assert tracked.endswith(".dir")
    assert computed_md5(data) == tracked


def test_stage_run_records_lineage(tmp_path: Path, mlflow_uri: str) -> None:
    (tmp_path / "in.txt").write_text("x")
    with stage_run(
        "build_noisy@0.1",
        "medran-test",
        Outer(),
        {"noisy": tmp_path / "in.txt"},
        tags={"noise_level": 0.1},
    ) as run:
        run.log_metrics({"loss": 1.5, "flag": True}, step=3)
    found = mlflow.search_runs(
        experiment_names=["medran-test"], filter_string="tags.noise_level = '0.1'"
    )
    assert len(found) == 1
    row = found.iloc[0]
    assert row["tags.stage"] == "build_noisy@0.1"
    assert row["tags.mlflow.runName"] == "build_noisy@0.1"
    assert row["tags.data_md5.noisy"] == computed_md5(tmp_path / "in.txt")
    assert row["params.inner.eps"] == "8" and row["metrics.loss"] == 1.5
    assert "metrics.flag" not in row  # booleans are not metrics
    inputs = mlflow.get_run(row["run_id"]).inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [row["tags.data_md5.noisy"]]


def test_failed_stage_marks_the_run_failed(mlflow_uri: str) -> None:
    with pytest.raises(RuntimeError), stage_run("pretrain@0.0", "medran-test", {}):
        raise RuntimeError("boom")
    found = mlflow.search_runs(experiment_names=["medran-test"])
    assert found["status"].tolist() == ["FAILED"]


def test_unreachable_store_names_the_uri_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for proxy in ("no_proxy", "NO_PROXY"):  # a proxy in the environment skips the check
            monkeypatch.setenv(proxy, "127.0.0.1")
        # MLflow's own retries are left as they are: alone they take minutes to give up
        start = time.monotonic()
        unreachable = pytest.raises(InputError, match=f"{re.escape(repr(uri))} is not reachable")
        with unreachable, stage_run("x", "e", {}):
            pytest.fail("the stage body ran against an unreachable store")
    assert time.monotonic() - start < 15


def test_disabled_run_logs_nothing(mlflow_uri: str) -> None:
    with stage_run("x", "medran-test", {}, enabled=False) as run:
        run.log_metrics({"a": 1.0})
    assert run.run_id is None


def test_orphaned_running_run_is_closed_by_the_next_run(mlflow_uri: str) -> None:
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("medran-test")
    orphan = mlflow.MlflowClient().create_run(
        mlflow.get_experiment_by_name("medran-test").experiment_id,
        tags={"stage": "pretrain@0.1"},
    )
    with stage_run("pretrain@0.1", "medran-test", {}):
        pass
    assert mlflow.get_run(orphan.info.run_id).info.status == "KILLED"


def test_log_steps_batches_every_step(mlflow_uri: str) -> None:
    steps = [(step, {"loss": 1.0 / step, "lr": 0.1, "flag": True}) for step in range(1, 1201)]
    with stage_run("finetune@0.0-cls-lp", "medran-test", {}) as run:
        run.log_steps(steps)  # 2400 values: three batches
    history = mlflow.MlflowClient().get_metric_history(run.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 1201))
    assert len(mlflow.MlflowClient().get_metric_history(run.run_id, "lr")) == 1200
    assert not mlflow.MlflowClient().get_metric_history(run.run_id, "flag")
    with stage_run("x", "medran-test", {}, enabled=False) as disabled:
        disabled.log_steps(steps)  # a disabled run ignores it

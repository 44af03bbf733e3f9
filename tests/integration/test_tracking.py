"""MLflow lineage helpers against a real SQLite store and a real DVC repository."""

from __future__ import annotations

import functools
import json
import logging
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
from medran.lineage import computed_md5, dvc_md5
from medran.tracking import (
    flatten,
    process_tags,
    redact,
    stage_run,
    tracking_uri,
)
from medran.ui import server_command, server_env


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


def _running(tags: dict[str, str]) -> str:
    """A RUNNING run of ``pretrain@0.1`` with ``tags``, as a worker leaves it; its id."""
    mlflow.set_experiment("medran-test")
    experiment = mlflow.get_experiment_by_name("medran-test").experiment_id
    return mlflow.MlflowClient().create_run(experiment, tags=tags).info.run_id


def test_orphan_cleanup_closes_the_runs_of_dead_workers_only(mlflow_uri: str) -> None:
    """A sibling worker of ``dvc exp run -j 2`` keeps its RUNNING run; a killed one's closes."""
    mlflow.set_tracking_uri(mlflow_uri)
    stage = {"stage": "pretrain@0.1"}
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    try:
        runs = {
            "live sibling": _running(stage | process_tags(sibling.pid)),
            "other host": _running(stage | process_tags(sibling.pid) | {"host": "elsewhere"}),
            "dead pid": _running(stage | process_tags(ended.pid) | {"pid_start": "1.00"}),
            "pid reused": _running(stage | process_tags(sibling.pid) | {"pid_start": "1.00"}),
            "untagged": _running(stage),  # logged before host and pid were recorded
        }
        with stage_run("pretrain@0.1", "medran-test", {}):
            pass
        status = {name: mlflow.get_run(run).info.status for name, run in runs.items()}
    finally:
        sibling.kill()
    assert status == {
        "live sibling": "RUNNING",
        "other host": "RUNNING",
        "dead pid": "KILLED",
        "pid reused": "KILLED",
        "untagged": "KILLED",
    }


def test_runs_record_their_process_and_dvc_experiment(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-a")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123abc")
    with stage_run("x", "medran-test", {}) as run:
        pass
    tags = mlflow.get_run(run.run_id).data.tags
    assert tags["dvc_exp_name"] == "sweep-a" and tags["dvc_exp_baseline_rev"] == "0123abc"
    assert tags["pid"] == str(os.getpid()) and tags["host"] == socket.gethostname()


def test_runs_are_named_by_what_tells_them_apart(mlflow_uri: str) -> None:
    model = {"task": "vqa", "method": "ran", "seed": 0}
    runs = {
        "finetune@0.5-vqa-ran seed0": ("finetune@0.5-vqa-ran", model),
        "eval_robust@0.5 vqa-ran seed0 default": ("eval_robust@0.5", model | {"preset": "default"}),
        "pretrain@0.5": ("pretrain@0.5", {"seed": 0}),  # one run per stage: the stage says it
    }
    for name, (stage, tags) in runs.items():
        with stage_run(stage, "medran-test", {}, tags=tags) as run:
            pass
        logged = mlflow.get_run(run.run_id)
        assert logged.info.run_name == name and logged.data.tags["stage"] == stage


def test_training_and_attack_runs_record_system_metrics(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    recorded = {}
    for stage in ("finetune@0.0-cls-ran", "report"):
        with stage_run(stage, "medran-test", {}) as run:
            time.sleep(1.0)
        recorded[stage] = mlflow.get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in recorded["finetune@0.0-cls-ran"]
    assert "system/system_memory_usage_megabytes" in recorded["finetune@0.0-cls-ran"]
    assert not any(k.startswith("system/") for k in recorded["report"])


def test_the_stages_of_one_dvc_run_share_a_pipeline_tag(tmp_path: Path) -> None:
    """A program named ``dvc`` starts two stages, twice: each invocation's stages share one
    ``pipeline_run`` value, and the two invocations differ; a stage run by hand has none."""
    stage = "from medran.tracking import pipeline_tags; print(pipeline_tags())"
    dvc = tmp_path / "dvc"
    dvc.write_text(
        f"#!{sys.executable}\nimport subprocess, sys\n"
        f"for _ in range(2):\n    subprocess.run([sys.executable, '-c', {stage!r}], check=True)\n"
    )
    dvc.chmod(0o755)

    def tags_of_one_run() -> list[str]:
        out = subprocess.run([str(dvc)], capture_output=True, text=True, check=True).stdout
        return out.splitlines()

    first, second = tags_of_one_run(), tags_of_one_run()
    assert len(set(first)) == 1 and "pipeline_run" in first[0]
    assert set(first) != set(second) and len(set(second)) == 1
    by_hand = subprocess.run([sys.executable, "-c", stage], capture_output=True, text=True)
    assert by_hand.stdout.strip() == "{}"


def test_the_experiment_is_marked_as_model_training(mlflow_uri: str) -> None:
    client = mlflow.MlflowClient(mlflow_uri)
    old = client.create_experiment("made-before-the-tag")  # a store from an older medran
    for name in ("medran-test", "made-before-the-tag"):
        with stage_run("x", name, {}):
            pass
        kind = client.get_experiment_by_name(name).tags.get("mlflow.experimentKind")
        assert kind == "custom_model_development", name
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_default_store_is_at_the_dvc_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queued or temporary experiment runs in a copy under .dvc/tmp/exps; DVC_ROOT names the
    project it belongs to, and its runs go to that project's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmp1234"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "project"))
    assert tracking_uri() == f"sqlite:///{tmp_path / 'project' / 'mlflow.db'}"
    monkeypatch.delenv("DVC_ROOT")
    assert tracking_uri() == f"sqlite:///{copy / 'mlflow.db'}"


def test_dataset_sources_are_paths_in_the_project(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the project, where DVC runs each stage
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("x")
    with stage_run("x", "medran-test", {}, {"noisy": tmp_path / "data" / "in.txt"}) as run:
        pass
    (dataset,) = mlflow.get_run(run.run_id).inputs.dataset_inputs
    assert json.loads(dataset.dataset.source) == {"uri": "data/in.txt"}


SECRET = "s3cr3t-pa55"
CREDENTIALED = [
    "https://alice:{s}@127.0.0.1:{port}/",
    "http://{s}@127.0.0.1:{port}",
    "postgresql://alice:{s}@127.0.0.1:{port}/mlflow",
    "mysql+pymysql://127.0.0.1:{port}/mlflow?user=alice&password={s}",
]


@pytest.mark.parametrize("template", CREDENTIALED)
def test_credentials_never_reach_logs_or_errors(
    template: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # nothing listens: the store fails as a wrong URI would
        sock.bind(("127.0.0.1", 0))
        uri = template.format(s=SECRET, port=sock.getsockname()[1])
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        for proxy in ("no_proxy", "NO_PROXY"):
            monkeypatch.setenv(proxy, "127.0.0.1")
        failing = pytest.raises(InputError)
        with caplog.at_level(logging.DEBUG), failing as error, stage_run("x", "medran-test", {}):
            pass
    assert "127.0.0.1" in str(error.value)  # the store is named...
    assert SECRET not in str(error.value) and SECRET not in caplog.text  # ...its secret is not
    assert SECRET not in redact(uri) and "***" in redact(uri)


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


def test_the_ui_server_gets_its_store_by_environment(tmp_path: Path) -> None:
    """A command line is visible to every user through ``ps``; the environment is not."""
    database = tmp_path / "mlflow.db"
    database.touch()
    uri = f"sqlite:///{database}"
    command = server_command(uri, 5000)
    assert not any(str(database) in word for word in command)
    assert server_env(uri)["MLFLOW_BACKEND_STORE_URI"] == uri
    with pytest.raises(InputError) as error:
        server_command(f"https://alice:{SECRET}@mlflow.example.org", 5000)
    assert SECRET not in str(error.value) and "mlflow.example.org" in str(error.value)


def test_library_telemetry_is_off_unless_a_user_opts_in() -> None:
    code = "import os, medran; print(os.environ['MLFLOW_DISABLE_TELEMETRY'], os.environ['GX_ANALYTICS_ENABLED'])"  # noqa: E501
    keys = ("MLFLOW_DISABLE_TELEMETRY", "GX_ANALYTICS_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    run = functools.partial(subprocess.run, [sys.executable, "-c", code], capture_output=True)
    assert run(env=env, text=True, check=True).stdout.split() == ["true", "false"]
    opted_in = env | {"GX_ANALYTICS_ENABLED": "true"}
    assert run(env=opted_in, text=True, check=True).stdout.split() == ["true", "true"]

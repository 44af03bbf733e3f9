"""MLflow helpers: one run per stage with flattened params, lineage tags and declared inputs.

Every run carries the tags a user filters on in the MLflow UI (``stage``, ``git_commit``,
``data_md5.<input>``, under ``dvc exp run`` ``dvc_exp_name`` and ``dvc_exp_baseline_rev``, and
whatever the stage adds: ``noise_level``, ``task``, ``method``, ``seed``, ``upstream_run_id``),
and declares each input with ``mlflow.log_input`` whose digest is the input's DVC md5, so a run
links back to the exact data version.

The default store is ``mlflow.db`` at the project's root (``DVC_ROOT``), also for queued and
temporary experiments, which DVC runs in a copy under ``.dvc/tmp/exps``. Tracking URIs are
shown only through :func:`redact`: a store's credentials never reach a log or an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import re
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medran.errors import InputError
from medran.lineage import dvc_md5, git_commit

log = logging.getLogger(__name__)

STORE = "mlflow.db"  # the default SQLite store, at the project's root
# MLflow 3's UI opens an experiment on its GenAI overview unless its kind says otherwise;
# medran's runs are model training, whose landing view is the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# Stages whose runs also record CPU, memory (and GPU) use as ``system/*`` metrics, sampled
# every 10 s by MLflow: the training and attack stages, where the cost is.
SYSTEM_METRICS_STAGES = (
    "pretrain",
    "train_surrogate",
    "finetune",
    "attack_images",
    "attack_captions",
)
BATCH = 1000  # metrics per MLflow log_batch call, MLflow's limit
# What DVC sets for a stage of `dvc exp run`, tagged on its runs: (environment, tag).
EXPERIMENT_TAGS = {"DVC_EXP_NAME": "dvc_exp_name", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline_rev"}
# userinfo of a URL (``//user:password@``), and query values that carry secrets.
_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:password|passwd|pwd|token|secret|key)[^=&]*=)[^&\s]*")


def project_root() -> Path:
    """The DVC project's root: ``DVC_ROOT``, which DVC sets for every stage (the parent project
    for ``--queue`` and ``--temp`` experiments), else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or the SQLite store ``mlflow.db`` at the project's root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / STORE}"


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it masked: ``https://***@host/``."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub("***@", str(text)))


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside the database (``mlartifacts/``), not in the
    working directory; other stores (servers, databases) keep their own default."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / "mlartifacts").as_uri()


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Fail at once when nothing listens at an ``http(s)://`` tracking URI: MLflow's client
    retries a refused connection with back-off for about four minutes before it gives up."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    proxied = urllib.request.getproxies().get(parts.scheme)
    if proxied and not urllib.request.proxy_bypass(parts.hostname):
        return  # reached through a proxy: only MLflow's own request can tell
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except (OSError, ValueError) as e:  # refused, unresolvable, timed out, or a bad port
        raise InputError(f"MLflow tracking store {redact(uri)!r} is not reachable: {e}") from e


def ensure_experiment(name: str, uri: str) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        tags = dict([EXPERIMENT_KIND])
        return mlflow.create_experiment(name, artifact_location=artifact_root(uri), tags=tags)
    key, kind = EXPERIMENT_KIND
    if experiment.tags.get(key) != kind:  # a store made before the tag was set
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, kind)
    return experiment.experiment_id


def flatten(params: Any, prefix: str = "") -> dict[str, str]:
    """Nested params (dicts or pydantic models) -> ``{"a.b.c": "value"}`` for MLflow."""
    if hasattr(params, "model_dump"):
        params = params.model_dump()
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if hasattr(value, "model_dump") or isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return flat


class StageRun:
    """The active run of a stage; a disabled one (non-main process) ignores every call."""

    def __init__(self, run_id: str | None):
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run_id:
            import mlflow

            plain = {k: float(v) for k, v in metrics.items() if _is_number(v)}
            mlflow.log_metrics(plain, step=step)

    def log_steps(self, steps: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Per-step metrics ``[(step, {key: value}), ...]`` in batched MLflow calls: a call per
        step costs more than a small model's whole training on a SQLite store."""
        if not self.run_id or not steps:
            return
        import mlflow
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), stamp, step)
            for step, values in steps
            for key, value in values.items()
            if _is_number(value)
        ]
        client = mlflow.MlflowClient()
        for begin in range(0, len(metrics), BATCH):
            client.log_batch(self.run_id, metrics=metrics[begin : begin + BATCH])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.run_id:
            import mlflow

            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path=artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.run_id:
            import mlflow

            mlflow.set_tags({k: str(v) for k, v in tags.items()})


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def process_tags(pid: int | None = None) -> dict[str, str]:
    """Who runs a run: host, pid (this process's by default) and the process's start time
    (a pid can be reused)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": str(pid), "pid_start": _started(pid)}


def pipeline_tags() -> dict[str, str]:
    """``pipeline_run``: which ``dvc repro`` (or experiment of ``dvc exp run``) ran this
    stage, the same for all its stages' runs: a digest of the nearest DVC process above this
    one (host, pid, start time). ``tags.pipeline_run = '...'`` lists one run's stages in the
    UI. Empty when no DVC process started this one (a stage run by hand)."""
    import psutil

    try:
        for parent in psutil.Process().parents():
            command = parent.cmdline()
            if any(Path(arg).name == "dvc" for arg in command[:3]) or "dvc" in command[1:3]:
                key = f"{socket.gethostname()}:{parent.pid}:{parent.create_time():.2f}"
                return {"pipeline_run": hashlib.sha1(key.encode()).hexdigest()[:12]}
    except psutil.Error:  # a parent gone or not readable: no grouping, nothing else lost
        pass
    return {}


def _started(pid: int) -> str:
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def _alive(tags: Mapping[str, str]) -> bool:
    """Whether the run's process may still run: on another host (which cannot be checked from
    here), or on this one with its pid alive and started when the run recorded. A run without
    a host tag (logged before medran recorded one) counts as dead."""
    if "host" not in tags:
        return False
    if tags["host"] != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here
    return bool(tags.get("pid")) and _started(int(tags["pid"])) == tags.get("pid_start")


def close_orphans(experiment_id: str, stage: str) -> None:
    """Mark runs of ``stage`` still RUNNING as KILLED when their process died without a word
    (``kill -9``, power loss); the rerun that resumes from the checkpoint replaces them. A run
    whose process still lives (a sibling worker of ``dvc exp run -j 2``) is left alone."""
    import mlflow

    orphans = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.stage = '{stage}' and attributes.status = 'RUNNING'",
        output_format="list",
    )
    for orphan in orphans:
        if _alive(orphan.data.tags):
            continue
        log.warning("marking orphaned run %s of %s as KILLED", orphan.info.run_id, stage)
        mlflow.MlflowClient().set_terminated(orphan.info.run_id, status="KILLED")


def run_name(stage: str, tags: Mapping[str, Any]) -> str:
    """The stage, and for the run of one fine-tuned model (tagged ``task`` and ``method``) what
    tells it from the stage's other runs: the model unless the stage names it, the seed, and
    the robust protocol's preset, e.g. ``finetune@0.5-vqa-ran seed0`` or
    ``eval_robust@0.5 vqa-ran seed0 default``."""
    if not {"task", "method"} <= tags.keys():
        return stage
    model = f"{tags['task']}-{tags['method']}"
    parts = [stage] if stage.endswith(model) else [stage, model]
    parts += [f"seed{tags['seed']}"] if "seed" in tags else []
    parts += [str(tags["preset"])] if "preset" in tags else []
    return " ".join(parts)


@contextmanager
def stage_run(
    stage: str,
    experiment: str,
    params: Any,
    inputs: Mapping[str, Path] | None = None,
    tags: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> Iterator[StageRun]:
    """One MLflow run tagged with its DVC stage and named by :func:`run_name`; marked FAILED
    if the body raises."""
    if not enabled:
        yield StageRun(None)
        return
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    uri = tracking_uri()
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id = ensure_experiment(experiment, uri)
        mlflow.set_experiment(experiment_id=experiment_id)
    except Exception as e:  # the store's own errors vary by backend; name the URI either way
        message = redact(f"MLflow tracking store {uri!r} is not reachable: {e}")
        raise InputError(message) from e
    close_orphans(experiment_id, stage)
    digests = {name: dvc_md5(path) for name, path in (inputs or {}).items()}
    all_tags = {"stage": stage, "git_commit": git_commit(), **process_tags(), **pipeline_tags()}
    all_tags |= {tag: os.environ[e] for e, tag in EXPERIMENT_TAGS.items() if os.environ.get(e)}
    all_tags |= {f"data_md5.{name}": digest for name, digest in digests.items()}
    all_tags |= {k: str(v) for k, v in (tags or {}).items()}
    name = run_name(stage, tags or {})
    system = stage.split("@")[0] in SYSTEM_METRICS_STAGES
    # Its start and stop lines at INFO would follow every run in the stage's log.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    with mlflow.start_run(run_name=name, tags=all_tags, log_system_metrics=system) as run:
        flat = flatten(params)
        items = list(flat.items())
        for start in range(0, len(items), 100):  # MLflow accepts 100 params per batch
            mlflow.log_params(dict(items[start : start + 100]))
        for key, path in (inputs or {}).items():
            # Relative to the project: an absolute path tells others about this machine.
            source = LocalArtifactDatasetSource(os.path.relpath(Path(path).resolve()))
            mlflow.log_input(MetaDataset(source, name=key, digest=digests[key]), context=key)
        log.info("MLflow run %s (%s) in %s", run.info.run_id, name, redact(uri))
        yield StageRun(run.info.run_id)

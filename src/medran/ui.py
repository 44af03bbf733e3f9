"""Open the MLflow UI on the project's tracking store: ``make ui`` and the browser test both
run ``python -m medran.ui``, so the test checks the server a user gets.

The server is bound to 127.0.0.1 and lean: one worker, and no job-execution consumers
(they serve MLflow's GenAI jobs, which this project does not use). It also serves the runs'
artifacts: their locations are absolute ``file://`` URIs under ``mlartifacts/`` beside the
database (``medran.tracking.artifact_root``), which the server reads directly. The store goes
to the server in its environment (``MLFLOW_BACKEND_STORE_URI``), not on its command line,
which ``ps`` shows every user; what is printed is redacted.

The address it prints opens the project's experiment on its runs table. MLflow 3's UI opens
every experiment on its GenAI overview unless the address names the model-training workflow:
the choice is the browser's (``workflowType``, GenAI by default), not the experiment's, so its
``mlflow.experimentKind`` tag (``medran.tracking``) alone does not change the landing view.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medran.errors import InputError
from medran.params import load_params
from medran.tracking import artifact_root, redact, tracking_uri

HOST = "127.0.0.1"
RUNS_VIEW = "workflowType=machine_learning"  # the UI's model-training view: the runs table


def server_command(uri: str, port: int) -> list[str]:
    """The ``mlflow server`` command line for the store at ``uri`` (which it does not hold:
    :func:`server_env` passes the store)."""
    if uri.startswith(("http://", "https://", "databricks")):
        raise InputError(
            f"MLFLOW_TRACKING_URI {redact(uri)!r} is a tracking server already: open it"
        )
    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if database and not database.is_file():  # the server would create an empty one
        raise InputError(f"no MLflow store at {database.resolve()}: run `make repro` first")
    command = [sys.executable, "-m", "mlflow", "server"]
    command += ["--host", HOST, "--port", str(port), "--workers", "1"]
    artifacts = artifact_root(uri)
    if artifacts:  # runs logged through this server then land beside the others
        command += ["--artifacts-destination", artifacts]
    return command


def server_env(uri: str) -> dict[str, str]:
    return {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": uri,
    }


def landing_url(uri: str, port: int, experiment: str) -> str:
    """The experiment's runs table on the server at ``port`` (the experiments list when the
    store has no such experiment yet)."""
    from mlflow import MlflowClient

    found = MlflowClient(uri).get_experiment_by_name(experiment)
    base = f"http://{HOST}:{port}/#/experiments"
    return f"{base}/{found.experiment_id}/runs?{RUNS_VIEW}" if found else f"{base}?{RUNS_VIEW}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Open the MLflow UI on the project's store.")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    uri = tracking_uri()
    command = server_command(uri, args.port)
    url = landing_url(uri, args.port, load_params().experiment)
    print(f"MLflow UI on {redact(uri)}: {url}  (Ctrl-C stops it)", flush=True)
    # exec, so Ctrl-C and the caller's signals reach the server itself
    os.execve(command[0], command, server_env(uri))


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"medran.ui: {e}")

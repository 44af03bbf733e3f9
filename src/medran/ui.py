"""Open the MLflow UI on the project's tracking store: ``make ui`` and the browser test both
run ``python -m medran.ui``, so the test checks the server a user gets.

The server is bound to 127.0.0.1 and lean: one worker, and no job-execution consumers
(they serve MLflow's GenAI jobs, which this project does not use). It also serves the runs'
artifacts: their locations are absolute ``file://`` URIs under ``mlartifacts/`` beside the
database (``medran.tracking.artifact_root``), which the server reads directly. The store goes
to the server in its environment (``MLFLOW_BACKEND_STORE_URI``), not on its command line,
which ``ps`` shows every user; what is printed is redacted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medran.errors import InputError
from medran.tracking import artifact_root, redact, tracking_uri

HOST = "127.0.0.1"


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Open the MLflow UI on the project's store.")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    uri = tracking_uri()
    command = server_command(uri, args.port)
    print(f"MLflow UI on {redact(uri)}: http://{HOST}:{args.port}  (Ctrl-C stops it)", flush=True)
    # exec, so Ctrl-C and the caller's signals reach the server itself
    os.execve(command[0], command, server_env(uri))


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"medran.ui: {e}")

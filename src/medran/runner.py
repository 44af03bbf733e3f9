"""What every stage script shares: its command line, params checks, logging, the metrics JSON,
and clean errors for bad input.

``stages/<name>.py`` is one call, ``stage_main("<name>")``. The command line is built from the
stage's contract (``medran.contracts``): its item keys (``level``, ``task``, ``method``,
``gate``) as positional arguments and its paths object's fields as ``--<field>`` options.
Params and keys are checked before the pipeline module (and torch) is imported, then
``medran.pipeline.<name>.run(params, *, paths, **keys)`` runs and its metrics are written to
``paths.metrics``.

A stage that fails on bad input (params, data files, a quality gate) prints one clear
message and exits with status 2, instead of a traceback; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from medran import contracts, names, startup
from medran.errors import InputError
from medran.launch import is_main_process
from medran.params import Params, check_choices, load_params

KEY_TYPES = {"level": float, "task": str, "method": str, "gate": str}


def setup_logging() -> None:
    """Our own loggers at ``MEDRAN_LOG_LEVEL`` (INFO); libraries only warn. open_clip and
    Great Expectations log chatty INFO lines, some on the root logger."""
    level = os.environ.get("MEDRAN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("medran").setLevel(level)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write a flat metrics JSON for ``dvc metrics`` (sorted keys, so diffs are stable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def parser_for(stage: str) -> argparse.ArgumentParser:
    """The stage's command line, from its keys and its paths object's fields."""
    parser = argparse.ArgumentParser(prog=f"stages/{stage}.py")
    for key in contracts.STAGE_KEYS.get(stage, ()):
        parser.add_argument(key, type=KEY_TYPES[key])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    for field in dataclasses.fields(contracts.STAGE_PATHS[stage]):
        if field.default is dataclasses.MISSING:
            parser.add_argument(f"--{field.name}", type=Path, required=True)
        else:
            parser.add_argument(f"--{field.name}", type=Path, default=field.default)
    return parser


def check_keys(params: Params, keys: dict[str, Any]) -> None:
    """A stage item's keys must be ones params.yaml configures (``dvc.yaml`` loops over them)."""
    if "level" in keys:
        params.check_level(keys["level"])
    if "task" in keys:
        check_choices("task", [keys["task"]], params.finetune.tasks)
    if "method" in keys:
        check_choices("method", [keys["method"]], params.finetune.methods)
    if "gate" in keys:
        check_choices("gate", [keys["gate"]], names.GATES)


def run_stage(stage: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the command line, check params and keys, run the stage and write its metrics."""
    args = vars(parser_for(stage).parse_args(argv))
    params = load_params(args.pop("params"))
    keys = {k: args.pop(k) for k in contracts.STAGE_KEYS.get(stage, ())}
    check_keys(params, keys)
    paths = contracts.STAGE_PATHS[stage](**args)
    if stage == "pretrain":  # several processes: re-exec under accelerate launch, before work
        from medran.launch import relaunch

        relaunch(params.pretrain)
    return execute(stage, params, paths, **keys)


def execute(stage: str, params: Params, paths: Any, **keys: Any) -> dict[str, Any]:
    """Run ``stage`` on checked params and write its metrics to ``paths.metrics``."""
    module = importlib.import_module(f"medran.pipeline.{stage}")
    startup.ready()
    try:
        metrics = module.run(params, paths=paths, **keys)
    except InputError as e:
        # A failed gate still records what it found, for `dvc metrics` and CI to show.
        if getattr(e, "metrics", None) is not None:
            write_metrics(paths.metrics, e.metrics)
        raise
    if is_main_process():
        write_metrics(paths.metrics, metrics)
    return metrics


def stage_main(stage: str) -> None:
    """Run ``stage`` from its script; bad input becomes a one-paragraph error and exit 2."""
    startup.begin()
    setup_logging()
    try:
        run_stage(stage)
    except InputError as e:
        print(f"{stage}: error: {e}", file=sys.stderr)
        sys.exit(2)

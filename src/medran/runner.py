"""What every stage script shares: logging, the metrics JSON, and clean errors for bad input.

A stage that fails on bad input (params, data files, a quality gate) prints one clear
message and exits with status 2, instead of a traceback; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medran.errors import InputError


def setup_logging() -> None:
    level = os.environ.get("MEDRAN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Libraries that log at INFO on import or per call would drown the stage's own lines.
    for noisy in ("great_expectations", "urllib3", "filelock", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write a flat metrics JSON for ``dvc metrics`` (sorted keys, so diffs are stable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def stage_main(main: Callable[[], None], name: str) -> None:
    """Run a stage's ``main``; bad input becomes a one-paragraph error and exit status 2."""
    setup_logging()
    try:
        main()
    except InputError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)

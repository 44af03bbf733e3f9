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
    """Our own loggers at ``MEDRAN_LOG_LEVEL`` (INFO); libraries only warn. open_clip and
    Great Expectations log chatty INFO lines, some on the root logger."""
    level = os.environ.get("MEDRAN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("medran").setLevel(level)


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

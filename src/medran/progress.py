"""Progress bars for work that runs longer than a few seconds.

A bar is drawn by the main process only, and only on an interactive terminal: ``dvc repro``
in a shell shows them, while a log file, a pipe, or CI (``CI`` set, as CI services do) gets
the stage's log lines alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def shown(main: bool = True) -> bool:
    return main and sys.stderr.isatty() and not os.environ.get("CI")


def bar(
    iterable: Iterable[T] | None = None, *, desc: str, main: bool = True, **options: Any
) -> tqdm:
    """A tqdm bar on stderr (``options`` as tqdm's), silent where :func:`shown` is false."""
    return tqdm(
        iterable, desc=desc, disable=not shown(main), leave=False, dynamic_ncols=True, **options
    )

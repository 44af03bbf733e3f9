"""A stage's start-up cost: the time from its process's start to its first unit of work.

The runner calls :func:`ready` once the stage's pipeline module (torch, open_clip, ...) is
imported and params are checked; a stage that loads a model first calls it again once the
model is loaded. Only with ``MEDRAN_REPORT_STARTUP`` set (``medran benchmark`` sets it) does
each call print ``medran-startup: <seconds>`` on stderr, and the benchmark takes a stage's last
line as its start-up time. The clock starts when the stage's first process started, so a
stage re-executed under ``accelerate launch`` counts both interpreters.
"""

from __future__ import annotations

import os
import sys
import time

import psutil

from medran.launch import is_main_process

REPORT = "MEDRAN_REPORT_STARTUP"
STARTED = "MEDRAN_STAGE_STARTED"  # epoch seconds; inherited by a relaunched stage
PREFIX = "medran-startup:"


def begin() -> None:
    """Note when this stage's first process started (a no-op in a relaunched child)."""
    os.environ.setdefault(STARTED, str(psutil.Process().create_time()))


def ready() -> None:
    """Report the time from the stage's start to now, when the benchmark asks for it."""
    if not os.environ.get(REPORT) or not is_main_process():
        return
    started = float(os.environ.get(STARTED) or psutil.Process().create_time())
    print(f"{PREFIX} {time.time() - started:.2f}", file=sys.stderr, flush=True)

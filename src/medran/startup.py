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
from pathlib import Path

import psutil

from medran.launch import is_main_process

REPORT = "MEDRAN_REPORT_STARTUP"
STARTED = "MEDRAN_STAGE_STARTED"  # on _now's clock; inherited by a relaunched stage
PROC_STAT = Path("/proc/self/stat")
PREFIX = "medran-startup:"


def begin() -> None:
    """Note when this stage's first process started (a no-op in a relaunched child, and
    unless the benchmark asks)."""
    if os.environ.get(REPORT):
        os.environ.setdefault(STARTED, str(_started()))


def ready() -> None:
    """Report the time from the stage's start to now, when the benchmark asks for it."""
    if not os.environ.get(REPORT) or not is_main_process():
        return
    started = float(os.environ.get(STARTED) or _started())
    print(f"{PREFIX} {_now() - started:.2f}", file=sys.stderr, flush=True)


def _started() -> float:
    """When this process started, on :func:`_now`'s clock. On Linux, the kernel's start tick
    against the boot-time clock: psutil's wall-clock start time rounds the boot time to a whole
    second, an error as large as a small stage's start-up."""
    if not PROC_STAT.exists():
        return psutil.Process().create_time()
    after_name = PROC_STAT.read_text().rsplit(")", 1)[1].split()
    return int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME) if PROC_STAT.exists() else time.time()

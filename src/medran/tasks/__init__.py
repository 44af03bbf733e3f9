"""Downstream tasks (``cls``, ``vqa``): data splits, encoders, heads, losses and metrics.

``TASKS`` maps a task name to its class; :func:`make_task` fails on an unknown name with the
list of valid ones, before any data is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medran.errors import InputError
from medran.tasks.base import Split, Task
from medran.tasks.cls import ClsTask
from medran.tasks.vqa import VqaTask

TASKS: dict[str, type[Task]] = {"cls": ClsTask, "vqa": VqaTask}


def make_task(name: str, prepared_root: Path, **options: Any) -> Task:
    """The task ``name`` over ``prepared_root`` (``data/prepared``); ``options`` go to its class
    (``cls``: ``multi_label``, ``normalize_features``)."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name](prepared_root, **options)


__all__ = ["TASKS", "ClsTask", "Split", "Task", "VqaTask", "make_task"]

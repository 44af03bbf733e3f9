"""Fault injection for the resume tests, loaded by Python at start-up through ``PYTHONPATH``.

The process SIGKILLs itself at a chosen point: the same death as ``kill -9`` from outside,
at a point that does not depend on how fast training runs.

- ``MEDRAN_KILL_AFTER_STEP=N``: right after the training loop's checkpoint of step N is
  complete (``medran.training.loop._save``);
- ``MEDRAN_KILL_IN_EXPORT=1``: when pre-training starts to export its model, after the final
  checkpoint (``medran.pipeline.pretrain.export``).

Other processes (``dvc`` itself) never import these modules and are untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import signal
import sys
from collections.abc import Callable
from typing import Any


def _die(*_args: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Wrap(importlib.abc.MetaPathFinder):
    """Replaces ``module.name`` by ``wrap(original)`` once the module is loaded."""

    def __init__(self, module: str, name: str, wrap: Callable[[Any], Any]):
        self.module, self.name, self.wrap = module, name, wrap

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)  # find the real module; wrap it once
        spec = importlib.util.find_spec(fullname)
        exec_module = spec.loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            setattr(module, self.name, self.wrap(getattr(module, self.name)))

        spec.loader.exec_module = exec_and_wrap
        return spec


def _save_then_die(kill_at: int) -> Callable[[Any], Any]:
    def wrap(save):
        def save_then_die(accelerator, checkpoint_dir, progress):
            save(accelerator, checkpoint_dir, progress)
            if progress["step"] >= kill_at:
                _die()

        return save_then_die

    return wrap


if "MEDRAN_KILL_AFTER_STEP" in os.environ:
    kill_at = int(os.environ["MEDRAN_KILL_AFTER_STEP"])
    sys.meta_path.insert(0, _Wrap("medran.training.loop", "_save", _save_then_die(kill_at)))
if os.environ.get("MEDRAN_KILL_IN_EXPORT"):
    sys.meta_path.insert(0, _Wrap("medran.pipeline.pretrain", "export", lambda _: _die))

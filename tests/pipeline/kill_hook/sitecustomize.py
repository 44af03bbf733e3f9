"""Fault injection for the resume test, loaded by Python at start-up through ``PYTHONPATH``.

When ``MEDRAN_KILL_AFTER_STEP`` is set, the training loop's checkpoint writer is wrapped so
the process SIGKILLs itself right after the checkpoint of that step is complete: the same
death as ``kill -9`` from outside, at a point that does not depend on how fast training runs.
Other processes (``dvc`` itself) never import the loop and are untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import signal
import sys

MODULE = "medran.training.loop"


class _WrapSave(importlib.abc.MetaPathFinder):
    def __init__(self, kill_at: int):
        self.kill_at = kill_at

    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)  # find the real module; wrap it once
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module
        kill_at = self.kill_at

        def exec_and_wrap(module):
            exec_module(module)
            save = module._save

            def save_then_die(accelerator, checkpoint_dir, progress):
                save(accelerator, checkpoint_dir, progress)
                if progress["step"] >= kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

            module._save = save_then_die

        spec.loader.exec_module = exec_and_wrap
        return spec


if "MEDRAN_KILL_AFTER_STEP" in os.environ:
    sys.meta_path.insert(0, _WrapSave(int(os.environ["MEDRAN_KILL_AFTER_STEP"])))

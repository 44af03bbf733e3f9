"""The one place a stage's device is chosen from its ``device`` param."""

from __future__ import annotations

import torch

SETTINGS = ("auto", "cpu")  # what a params ``device`` key may say


def pick_device(setting: str = "auto") -> str:
    """``"cuda"`` when ``setting`` is ``auto`` and a CUDA device is present, else ``"cpu"``.

    Accelerate takes the same choice as ``Accelerator(cpu=pick_device(setting) == "cpu")``;
    under ``accelerate launch`` without CUDA that runs CPU processes (gloo) instead of failing.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown device setting {setting!r}; allowed: {list(SETTINGS)}")
    return "cuda" if setting == "auto" and torch.cuda.is_available() else "cpu"

"""``lp``: a linear probe on the frozen encoder's features."""

from __future__ import annotations

import torch
from torch import nn

from medran.methods.base import Batch, LossFn, Method, clean_features
from medran.params import MethodParams


class LinearProbe(Method):
    """Task loss of a linear head on frozen (cacheable) features; nothing else trains."""

    name = "lp"
    config_class = MethodParams
    default_head = "linear"

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        z = clean_features(model, batch)
        task = loss_fn(model.forward_features(z, batch.get("context")), batch["targets"])
        return {"loss": task, "task": task}

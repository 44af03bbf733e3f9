"""``advft``: adversarial fine-tuning of the head only (the baseline RAN is compared with).

PGD examples against the current model (frozen encoder + head), task loss on them, optionally
plus ``w_clean`` times the clean task loss. No rectifier, no regularisers.
"""

from __future__ import annotations

import torch
from torch import nn

from medran.methods.base import Batch, LossFn, Method, clean_features, craft
from medran.params import AdvFTParams


class AdvFT(Method):
    """Task loss on PGD examples (plus ``w_clean`` x clean task loss); only the head trains."""

    name = "advft"
    config_class = AdvFTParams

    @property
    def adversarial(self) -> bool:
        return True

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        context, targets = batch.get("context"), batch["targets"]
        x_adv = craft(model, batch, loss_fn, self.config, self.name)
        with torch.no_grad():  # frozen encoder: the graph starts at the head
            z_adv = model.features(x_adv)
        adv = loss_fn(model.forward_features(z_adv, context), targets)
        out, loss = {"adv": adv}, adv
        if self.config.w_clean:
            z = clean_features(model, batch)
            out["task"] = loss_fn(model.forward_features(z, context), targets)
            loss = loss + self.config.w_clean * out["task"]
        out["loss"] = loss
        return out

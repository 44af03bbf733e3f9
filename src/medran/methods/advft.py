"""``advft``: adversarial fine-tuning of the head only (the baseline RAN is compared with).

PGD examples against the current model (frozen encoder + head), task loss on them, optionally
plus ``w_clean`` times the clean task loss. No rectifier, no regularisers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medran.methods.base import (
    HEAD_TYPES,
    AttackConfig,
    Batch,
    LossFn,
    Method,
    check_fields,
    clean_features,
    craft,
)


@dataclass(frozen=True)
class AdvFTConfig(AttackConfig):
    """Head type, the training PGD's budget (1/255 units) and the clean-loss weight.

    w_clean 0.0 is Madry et al.'s adversarial training (adversarial loss only); 1.0 gives the
    usual clean + adversarial mix.
    """

    head: str = "linear"
    w_clean: float = 0.0

    def validate(self) -> None:
        super().validate()
        check_fields(self, ("head",), lambda v: v in HEAD_TYPES, str(list(HEAD_TYPES)))
        check_fields(self, ("w_clean",), lambda v: v >= 0, ">= 0")


class AdvFT(Method):
    """Task loss on PGD examples (plus ``w_clean`` x clean task loss); only the head trains."""

    name = "advft"
    config_class = AdvFTConfig

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

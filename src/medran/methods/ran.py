"""``ran``: our RAN, NMTune plus an adversarial term (DESIGN §6).

Each step crafts x_adv by PGD against the current model (frozen encoder + rectifier + head)
and adds, to NMTune's loss,

    w_adv * task(head(rectifier(encoder(x_adv))))
    + w_rect * MSE(norm rectifier(encoder(x_adv)), norm encoder(x))

the second pulling the rectified adversarial feature toward the clean pre-trained one. With
w_adv = w_rect = 0 no attack is run, no random number drawn, and the method *is* NMTune (and
can train on cached features); each weight set to 0 also skips its own computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medran.methods.base import AttackConfig, Batch, LossFn, check_fields, clean_features, craft
from medran.methods.nmtune import NMTune, NMTuneConfig, regularised_losses
from medran.methods.regularizers import mse_term


@dataclass(frozen=True)
class RANConfig(NMTuneConfig, AttackConfig):
    """NMTune's fields, the training PGD's (1/255 units) and the two adversarial weights.

    w_adv 1.0 weighs the adversarial task loss like the clean one (the usual 50/50 mix of
    clean and adversarial training); w_rect 1.0 matches NMTune's MSE weight, the term having
    the same form and scale.
    """

    w_adv: float = 1.0
    w_rect: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_fields(self, ("w_adv", "w_rect"), lambda v: v >= 0, ">= 0")


class RAN(NMTune):
    """NMTune + PGD adversarial task loss + rectification of adversarial features."""

    name = "ran"
    config_class = RANConfig

    @property
    def adversarial(self) -> bool:
        return self.config.w_adv > 0 or self.config.w_rect > 0

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        if not self.adversarial:
            return super().losses(model, batch, loss_fn)
        z = clean_features(model, batch)
        out = regularised_losses(model, z, batch, loss_fn, self.config)
        x_adv = craft(model, batch, loss_fn, self.config, self.name)
        with torch.no_grad():  # frozen encoder: the graph starts at the rectifier
            z_adv = model.features(x_adv)
        z_adv_rect = model.rectifier(z_adv)
        loss = out["loss"]
        if self.config.w_adv:
            logits = model.head(z_adv_rect, batch.get("context"))
            out["adv"] = loss_fn(logits, batch["targets"])
            loss = loss + self.config.w_adv * out["adv"]
        if self.config.w_rect:
            out["rect"] = mse_term(z_adv_rect, z)
            loss = loss + self.config.w_rect * out["rect"]
        out["loss"] = loss
        return out

"""``ran``: our RAN, NMTune plus an adversarial term (docs/architecture.md, "Methods").

Each step crafts x_adv by PGD against the current model (frozen encoder + rectifier + head)
and adds, to NMTune's loss,

    w_adv * task(head(rectifier(encoder(x_adv))))
    + w_rect * MSE(norm rectifier(encoder(x_adv)), norm encoder(x))

the second pulling the rectified adversarial feature toward the clean pre-trained one. With
w_adv = w_rect = 0 no attack is run, no random number drawn, and the method *is* NMTune (and
can train on cached features); each weight set to 0 also skips its own computation.
"""

from __future__ import annotations

import torch
from torch import nn

from medran.methods.base import Batch, LossFn, clean_features, craft
from medran.methods.nmtune import NMTune, regularised_losses
from medran.methods.regularizers import mse_term
from medran.params import RANParams


class RAN(NMTune):
    """NMTune + PGD adversarial task loss + rectification of adversarial features."""

    name = "ran"
    config_class = RANParams

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

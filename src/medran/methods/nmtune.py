"""``nmtune``: NMTune (Chen et al., ICLR 2024) on frozen features.

A residual rectifier z' = z + s * MLP(z) in front of the head, trained with
task + w_mse * MSE(norm z', norm z) + w_cov * L_cov - w_svd * mean(top-k normalised
singular values of z'). A weight of 0 removes its term and skips computing it.
"""

from __future__ import annotations

import torch
from torch import nn

from medran.methods.base import Batch, LossFn, Method, clean_features
from medran.methods.rectifier import Rectifier
from medran.methods.regularizers import covariance_term, mse_term, singular_value_term
from medran.params import NMTuneParams


def regularised_losses(
    model: nn.Module,
    z: torch.Tensor,
    batch: Batch,
    loss_fn: LossFn,
    config: NMTuneParams,
) -> dict[str, torch.Tensor]:
    """NMTune's named losses for frozen features ``z``; ``"loss"`` is their weighted total."""
    z_rect = model.rectifier(z)
    task = loss_fn(model.head(z_rect, batch.get("context")), batch["targets"])
    out, loss = {"task": task}, task
    if config.w_mse:
        out["mse"] = mse_term(z_rect, z)
        loss = loss + config.w_mse * out["mse"]
    if config.w_cov:
        out["cov"] = covariance_term(z_rect)
        loss = loss + config.w_cov * out["cov"]
    if config.w_svd:
        out["svd"] = singular_value_term(z_rect, config.k)
        loss = loss - config.w_svd * out["svd"]
    out["loss"] = loss
    return out


class NMTune(Method):
    """Rectifier + head trained with NMTune's regularised loss on frozen (cacheable) features."""

    name = "nmtune"
    config_class = NMTuneParams
    needs_rectifier = True

    def build_rectifier(self, dim: int) -> nn.Module:
        return Rectifier(dim, self.config.hidden_ratio, self.config.scale_init)

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        return regularised_losses(model, clean_features(model, batch), batch, loss_fn, self.config)

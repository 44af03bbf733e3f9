"""``nmtune``: NMTune (Chen et al., ICLR 2024) on frozen features.

A residual rectifier z' = z + s * MLP(z) in front of the head, trained with
task + w_mse * MSE(norm z', norm z) + w_cov * L_cov - w_svd * mean(top-k normalised
singular values of z'). A weight of 0 removes its term and skips computing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medran.methods.base import (
    HEAD_TYPES,
    Batch,
    LossFn,
    Method,
    MethodConfig,
    check_fields,
    clean_features,
)
from medran.methods.rectifier import Rectifier
from medran.methods.regularizers import covariance_term, mse_term, singular_value_term


@dataclass(frozen=True)
class NMTuneConfig(MethodConfig):
    """NMTune's defaults (its paper and code): w_mse 1.0, w_cov 0.04, w_svd 0.001, k 5."""

    head: str = "linear"
    hidden_ratio: int = 4
    scale_init: float = 0.1
    w_mse: float = 1.0
    w_cov: float = 0.04
    w_svd: float = 0.001
    k: int = 5

    def validate(self) -> None:
        super().validate()
        check_fields(self, ("head",), lambda v: v in HEAD_TYPES, str(list(HEAD_TYPES)))
        check_fields(self, ("hidden_ratio", "k"), lambda v: v >= 1, ">= 1")
        check_fields(self, ("scale_init", "w_mse", "w_cov", "w_svd"), lambda v: v >= 0, ">= 0")


def regularised_losses(
    model: nn.Module,
    z: torch.Tensor,
    batch: Batch,
    loss_fn: LossFn,
    config: NMTuneConfig,
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
    config_class = NMTuneConfig
    needs_rectifier = True

    def build_rectifier(self, dim: int) -> nn.Module:
        return Rectifier(dim, self.config.hidden_ratio, self.config.scale_init)

    def losses(self, model: nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, torch.Tensor]:
        return regularised_losses(model, clean_features(model, batch), batch, loss_fn, self.config)

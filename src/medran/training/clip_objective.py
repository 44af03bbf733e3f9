"""CLIP's contrastive objective (open_clip's ``ClipLoss``) for the one training loop."""

from __future__ import annotations

import open_clip
import torch
from torch import nn

from medran.models.wrappers import Normalize


class ClipObjective(nn.Module):
    """Symmetric InfoNCE over the global batch: features are gathered across processes."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], rank: int, world: int):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.loss = open_clip.ClipLoss(
            local_loss=False, gather_with_grad=world > 1, rank=rank, world_size=world
        )

    def forward(
        self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        images, tokens = batch
        out = model(image=self.normalize.to(images.device)(images), text=tokens)
        loss = self.loss(out["image_features"], out["text_features"], out["logit_scale"])
        return {"loss": loss, "logit_scale": out["logit_scale"].detach()}

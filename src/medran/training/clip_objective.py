"""CLIP's contrastive objective (open_clip's ``ClipLoss``) and the one entry that trains a
CLIP with it: ``pretrain`` and ``train_surrogate`` both call :func:`train_clip`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import open_clip
import torch
from torch import nn
from torch.utils.data import Dataset

from medran.models.wrappers import Normalize
from medran.training.loop import LoopConfig, LoopHooks, train

if TYPE_CHECKING:
    from accelerate import Accelerator

    from medran.models.factory import ClipModel


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


def train_clip(
    accelerator: Accelerator,
    clip: ClipModel,
    dataset: Dataset,
    cfg: LoopConfig,
    hooks: LoopHooks | None = None,
) -> ClipModel:
    """Contrastive training of ``clip`` on ``dataset`` (pairs of image in [0, 1] and caption
    tokens, see :func:`medran.training.data.image_text_tensors`) with the one loop, resuming
    from ``cfg.checkpoint_dir`` if set; returns ``clip`` holding the trained, unwrapped model
    in eval mode."""
    objective = ClipObjective(
        clip.mean, clip.std, accelerator.process_index, accelerator.num_processes
    )
    clip.model = train(accelerator, clip.model, dataset, objective, cfg, hooks)
    clip.model.eval()
    return clip

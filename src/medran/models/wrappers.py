"""Wrappers that give attacks and tasks the interface they need.

Attacks work on images in [0, 1]; the model's own normalisation happens inside the wrapper,
so the L-inf budget is measured in pixel space (torchattacks' convention).
"""

from __future__ import annotations

import torch
from torch import nn

from medran.models.factory import ClipModel


class Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageEncoder(nn.Module):
    """[0, 1] images -> CLIP image embeddings (L2-normalised unless ``normalize=False``).

    Images of another size are resized inside (differentiably), so an attack's budget stays
    defined on the stored pixels whatever the encoder's input resolution.
    """

    def __init__(self, clip: ClipModel, normalize: bool = True):
        super().__init__()
        self.norm = Normalize(clip.mean, clip.std)
        self.visual = clip.model.visual
        self.size = clip.image_size
        self.normalize = normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.size or images.shape[-2] != self.size:
            images = nn.functional.interpolate(
                images, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        features = self.visual(self.norm(images))
        return nn.functional.normalize(features, dim=-1) if self.normalize else features

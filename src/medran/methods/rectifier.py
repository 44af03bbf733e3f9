"""NMTune's residual feature rectifier: z' = z + s * MLP(z).

The MLP is Linear(D, 4D) -> BatchNorm -> ReLU -> Linear(4D, D) and s a learnable
per-dimension scale (Chen et al., ICLR 2024). Token features (B, T, D) go through the same
MLP token by token, BatchNorm taking its statistics over all B * T tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class Rectifier(nn.Module):
    """Residual MLP rectifier of (B, D) or (B, T, D) features.

    ``scale_init`` is small (0.1) so that z' starts close to the pre-trained z: the head
    first sees the pre-trained geometry and the MSE consistency term starts near zero, while
    the MLP still gets a usable gradient (it is multiplied by s; at s = 0 it would get none).
    NMTune's code starts s at 0.5; 0.1 is the more conservative choice for small, noisy
    downstream sets, and s learns its own size anyway.
    """

    def __init__(self, dim: int, hidden_ratio: int = 4, scale_init: float = 0.1):
        super().__init__()
        hidden = hidden_ratio * dim
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )
        self.scale = nn.Parameter(torch.full((dim,), float(scale_init)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim not in (2, 3) or z.shape[-1] != self.scale.numel():
            raise ValueError(
                f"expected (B, {self.scale.numel()}) or (B, T, {self.scale.numel()}) features, "
                f"got {tuple(z.shape)}"
            )
        update = self.mlp(z.reshape(-1, z.shape[-1])).reshape(z.shape)
        return z + self.scale * update

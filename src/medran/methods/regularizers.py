"""NMTune's three feature-space regularisers (Chen et al., ICLR 2024), as in its code.

The loss is ``task + w_mse * mse_term + w_cov * covariance_term - w_svd * singular_value_term``:
keep the rectified features close to the pre-trained ones, decorrelate their dimensions,
and concentrate the spectrum on its top singular values (noise in pre-training flattens it).
Token features (B, T, D) are mean-pooled over tokens for the batch statistics (covariance,
spectrum); the MSE term compares them token by token.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def pool_tokens(z: torch.Tensor) -> torch.Tensor:
    """(B, T, D) -> (B, D) by the mean over tokens; (B, D) unchanged."""
    return z.mean(dim=1) if z.ndim == 3 else z


def mse_term(z_rect: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean squared error between L2-normalised z' and z (z is a fixed target, detached).

    The mean runs over all elements (``F.mse_loss``), as NMTune's ``nn.MSELoss`` does.
    """
    return F.mse_loss(F.normalize(z_rect, dim=-1), F.normalize(z.detach(), dim=-1))


def covariance_term(z_rect: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal entries of the batch covariance of z', divided by D.

    The covariance is unbiased (divided by B - 1), as in NMTune and VICReg; a batch of one
    has no covariance and gives zero.
    """
    z = pool_tokens(z_rect)
    z = z - z.mean(dim=0)
    cov = z.T @ z / max(z.shape[0] - 1, 1)
    off_diagonal = cov - torch.diag_embed(cov.diagonal())
    return off_diagonal.pow(2).sum() / z.shape[1]


def singular_value_term(z_rect: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Mean of the top-k singular values of the (B, D) batch of z', each divided by their sum.

    As in NMTune's code: singular values of the raw (not row-normalised) feature matrix,
    normalised by the sum of all of them, so the term is scale-free, lies in (0, 1/k] and
    grows as the spectrum concentrates on its top k directions (it is subtracted from the
    loss). When min(B, D) <= k the top k are the whole spectrum and the term is constant.
    Computed in float32: ``svdvals`` has no half-precision kernels, and its gradient is
    stable even for repeated singular values (unlike that of the singular vectors).
    """
    s = torch.linalg.svdvals(pool_tokens(z_rect).float())
    s = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny)
    return s[:k].mean()

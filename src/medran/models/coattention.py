"""The VQA co-attention head (Fig. 4c): image and question tokens fused, pooled, classified.

Both modalities are first projected (Linear + LayerNorm) to a common ``width``. Each of the
``depth`` layers is bidirectional cross-attention: image tokens attend to question tokens and
question tokens attend to image tokens, each as a post-norm Transformer sub-layer pair
(attention + residual + LayerNorm, feed-forward + residual + LayerNorm). The two directions of
one layer read the previous layer's states (symmetric, so neither modality gets a head start).
Question padding is masked as attention keys and excluded from pooling; padded query rows are
computed but never read, so padding cannot change the output.

Pooling is the mean over valid tokens of each modality, **concatenated** (2 * width) rather
than summed: concatenation keeps which modality the evidence came from at the cost of a
slightly larger classifier, and the classifier is the linear or MLP head from ``HEADS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from medran.errors import InputError
from medran.models.finetune import QuestionContext

if TYPE_CHECKING:
    from medran.params import CoAttentionParams

# in_dim -> the classifier over the pooled features, e.g.
# ``functools.partial(build_head, "linear", n_out=n_answers)``.
Classifier = Callable[[int], nn.Module]


class CrossAttentionLayer(nn.Module):
    """Queries ``x`` attend to ``y``; post-norm residual attention then feed-forward."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.ffn = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )
        self.norm2 = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, y_padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``y_padding`` (B, L_y): True where ``y`` is padding (PyTorch's key_padding_mask)."""
        attended, _ = self.attn(x, y, y, key_padding_mask=y_padding, need_weights=False)
        x = self.norm1(x + self.drop(attended))
        return self.norm2(x + self.drop(self.ffn(x)))


class BiCrossAttentionLayer(nn.Module):
    """One co-attention layer: image <- question and question <- image, in parallel."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.image_from_text = CrossAttentionLayer(width, heads, mlp_ratio, dropout)
        self.text_from_image = CrossAttentionLayer(width, heads, mlp_ratio, dropout)

    def forward(
        self, image: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        new_image = self.image_from_text(image, text, text_padding)
        new_text = self.text_from_image(text, image)  # every image token is valid
        return new_image, new_text


class CoAttentionHead(nn.Module):
    """``(image tokens (B, T, D_i), QuestionContext) -> logits (B, n_answers)``.

    Args:
        image_dim, text_dim: token widths of the image and text encoders.
        settings: the ``finetune.vqa`` params section: ``depth`` bidirectional cross-attention
            layers of ``heads`` heads at a common ``width`` (divisible by ``heads``), with
            feed-forward ``mlp_ratio`` and ``dropout``.
        classifier: builds the classifier (a head from ``HEADS``, which fixes the number of
            answers) over the pooled 2 * width features.
    """

    def __init__(
        self, image_dim: int, text_dim: int, settings: CoAttentionParams, classifier: Classifier
    ):
        super().__init__()
        depth, width, heads = settings.depth, settings.width, settings.heads
        # Checked here too: settings built without validation must not reach PyTorch's asserts.
        if depth < 1 or width < 1 or heads < 1 or width % heads:
            raise InputError(
                f"co-attention needs depth >= 1 and width divisible by heads; "
                f"got depth={depth}, width={width}, heads={heads}"
            )
        self.image_proj = nn.Sequential(nn.Linear(image_dim, width), nn.LayerNorm(width))
        self.text_proj = nn.Sequential(nn.Linear(text_dim, width), nn.LayerNorm(width))
        self.layers = nn.ModuleList(
            BiCrossAttentionLayer(width, heads, settings.mlp_ratio, settings.dropout)
            for _ in range(depth)
        )
        self.classifier = classifier(2 * width)

    def forward(self, z: torch.Tensor, context: QuestionContext) -> torch.Tensor:
        if context is None:
            raise InputError("the VQA co-attention head needs the question context")
        tokens, mask = context
        mask = mask.to(device=z.device, dtype=torch.bool)
        # Internal invariant: the tokenizer always emits start/end tokens, so no empty question.
        assert bool(mask.any(1).all()), "a question has no valid token"
        image, text = self.image_proj(z), self.text_proj(tokens.to(z.dtype))
        for layer in self.layers:
            image, text = layer(image, text, ~mask)
        valid = mask.unsqueeze(-1)
        # Mean over real question tokens only; image tokens are all real.
        text_pool = text.masked_fill(~valid, 0.0).sum(1) / valid.sum(1).to(text.dtype)
        pooled = torch.cat([image.mean(1), text_pool], dim=-1)
        return self.classifier(pooled)

"""The VQA co-attention head: shapes, padding masks, gradients, depth/width, classifiers."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch

from medran.errors import InputError
from medran.models.coattention import CoAttentionHead
from medran.models.factory import create_clip
from medran.models.finetune import (
    HEADS,
    FineTuneModel,
    ImageTokenEncoder,
    QuestionContext,
    build_head,
)
from medran.params import CoAttentionParams

IMAGE_DIM, TEXT_DIM, N_ANSWERS = 12, 10, 7
SETTINGS = {"depth": 2, "width": 16, "heads": 4, "mlp_ratio": 2.0, "dropout": 0.1}


def settings(**changes: Any) -> CoAttentionParams:
    # Unvalidated, so that the head's own checks are the ones exercised.
    return CoAttentionParams.model_construct(**(SETTINGS | changes))


def head(
    classifier: str = "linear", classifier_options: dict[str, Any] | None = None, **changes: Any
) -> CoAttentionHead:
    torch.manual_seed(0)
    make = partial(build_head, classifier, n_out=N_ANSWERS, **(classifier_options or {}))
    return CoAttentionHead(IMAGE_DIM, TEXT_DIM, settings(**changes), make).eval()


def context(lengths: list[int], max_len: int) -> QuestionContext:
    mask = torch.arange(max_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return QuestionContext(torch.randn(len(lengths), max_len, TEXT_DIM), mask)


def test_shapes() -> None:
    logits = head()(torch.randn(3, 5, IMAGE_DIM), context([2, 4, 6], 6))
    assert logits.shape == (3, N_ANSWERS)


def test_padded_question_tokens_do_not_change_the_output() -> None:
    model, image = head(), torch.randn(2, 5, IMAGE_DIM)
    ctx = context([3, 5], 5)
    reference = model(image, ctx)
    # Same questions with 4 more padding positions holding garbage, and the old padding changed.
    tokens = torch.cat([ctx.tokens, 100 * torch.randn(2, 4, TEXT_DIM)], dim=1)
    tokens[0, 3:5] = -50.0
    mask = torch.cat([ctx.mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model(image, QuestionContext(tokens, mask)), reference)


def test_gradient_flows_to_image_tokens() -> None:
    image = torch.randn(2, 5, IMAGE_DIM, requires_grad=True)
    head()(image, context([2, 3], 3)).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_gradient_flows_to_the_input_image_through_a_frozen_open_clip_encoder() -> None:
    clip = create_clip("medran-tiny", seed=0)
    encoder = ImageTokenEncoder(clip)
    assert encoder.n_tokens == 64 and encoder.out_dim == 96  # 64/8 patches squared, width 96
    make = partial(build_head, "linear", n_out=N_ANSWERS)
    vqa_head = CoAttentionHead(encoder.out_dim, 96, settings(depth=1, width=32), make)
    model = FineTuneModel(encoder, vqa_head)
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    ctx = QuestionContext(torch.randn(2, 4, 96), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]) > 0)
    model(images, ctx).logsumexp(-1).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert model.train().encoder.training is False  # the encoder stays in eval mode


def test_depth_and_width_arguments() -> None:
    model = head(depth=3, width=24, heads=3)
    assert len(model.layers) == 3
    assert model.image_proj[0].out_features == 24 and model.text_proj[0].out_features == 24
    assert model.classifier.fc.in_features == 48  # image and question pools concatenated
    with pytest.raises(InputError, match="divisible by heads"):
        head(width=10, heads=4)
    with pytest.raises(InputError, match="depth >= 1"):
        head(depth=0)


def test_mlp_classifier_and_unknown_classifier() -> None:
    model = head(classifier="mlp", classifier_options={"hidden": 8})
    assert model.classifier.net[0].out_features == 8
    assert model(torch.randn(1, 5, IMAGE_DIM), context([2], 2)).shape == (1, N_ANSWERS)
    with pytest.raises(InputError, match=r"valid heads: \['linear', 'mlp'\]"):
        head(classifier="svm")


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_contract(name: str) -> None:
    """Every registered head maps (B, D) features to (B, n_out) logits and ignores context."""
    module = build_head(name, 8, 3)
    z = torch.randn(4, 8, requires_grad=True)
    out = module(z, None)
    assert out.shape == (4, 3)
    out.sum().backward()
    assert z.grad is not None


def test_linear_head_rejects_options() -> None:
    with pytest.raises(InputError, match=r"unknown linear head options \['hidden'\]"):
        build_head("linear", 8, 3, hidden=4)
    assert isinstance(build_head("linear", 8, 3, standardize=False).norm, torch.nn.Identity)

"""Methods that fine-tune the encoder (``fare``, ``tecoa``) on real tiny open_clip models: the
model trains a copy of the encoder, the pre-trained ClipModel never changes, BatchNorm keeps
its statistics, and TeCoA's classification head starts as CLIP's zero-shot classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medran.errors import InputError
from medran.methods import get_method, trainable_parameters
from medran.models.factory import ClipModel, create_clip
from medran.models.finetune import (
    FineTuneModel,
    ImageFeatureEncoder,
    ImageTokenEncoder,
    LinearHead,
    weights_hash,
)
from medran.models.zeroshot import class_embeddings, logit_scale, text_prompt_head
from medran.training.loop import param_groups
from tests.helpers import section

CLASSES = ["Cardiomegaly", "Effusion", "No Finding"]
PROMPTS = ["a chest x-ray showing {}.", "chest radiograph: {}."]


@pytest.fixture(scope="module")
def rn32() -> ClipModel:
    """A ResNet tower: BatchNorm layers, whose statistics must stay fixed while tuning."""
    return create_clip("medran-rn32", seed=0)


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def batch_norms(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state(module).items() if "running_" in k}


def fare_model(clip: ClipModel) -> tuple[FineTuneModel, dict]:
    """A FARE model on ``clip``'s pooled features and a batch as ``WithImages`` serves it."""
    encoder = ImageFeatureEncoder(clip).eval()
    torch.manual_seed(0)
    model = FineTuneModel(encoder, LinearHead(encoder.out_dim, 3), tune_encoder=True)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, clip.image_size, clip.image_size, generator=g)
    with torch.no_grad():  # the feature cache: the pre-trained encoder in eval mode
        z = encoder(images)
    return model, {"images": images, "z": z, "targets": torch.randint(0, 3, (8,), generator=g)}


def fare_steps(model: FineTuneModel, batch: dict, steps: int, **config: float) -> list[float]:
    """FARE's loss at a fixed random start before and after each of ``steps`` AdamW steps
    (the encoder at its own lr, as the training loop does)."""
    method = get_method("fare", section("finetune", fare=config).fare)
    groups = param_groups(model, 0.0, tuple(method.group_lrs.items()))
    optimizer = torch.optim.AdamW(groups, lr=method.config.lr)

    def fare_loss() -> float:
        torch.manual_seed(1)  # the same random start each time
        return float(method.losses(model.train(), batch, F.cross_entropy)["fare"].detach())

    trajectory = [fare_loss()]
    for _ in range(steps):
        losses = method.losses(model.train(), batch, F.cross_entropy)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        trajectory.append(fare_loss())
    return trajectory


def test_fare_tunes_a_copy_of_the_encoder_and_never_the_clip() -> None:
    # A random-init ViT: its features depend on the input enough for a FARE loss to learn
    # (a random-init ResNet's barely do).
    clip = create_clip("medran-tiny", seed=0)
    clip_before, hash_before = state(clip.model), weights_hash(ImageFeatureEncoder(clip))
    model, batch = fare_model(clip)
    assert model.encoder.visual is not clip.model.visual
    assert model.encoder_hash == hash_before  # the pre-trained encoder, before any tuning
    encoder_before = state(model.encoder)
    trajectory = fare_steps(model, batch, 6, eps=32.0, step_size=32.0, encoder_lr=1e-3)
    assert trajectory[-1] < 0.5 * trajectory[0], trajectory
    assert model.training and not model.encoder.training  # the encoder stays in eval mode
    tuned = state(model.encoder)
    assert any(not torch.equal(tuned[k], encoder_before[k]) for k in tuned)
    clip_after = state(clip.model)
    assert all(torch.equal(clip_after[k], clip_before[k]) for k in clip_before)
    assert model.encoder_hash == hash_before != weights_hash(model.encoder)


def test_a_tuned_encoder_keeps_its_batch_norm_statistics(rn32: ClipModel) -> None:
    clip_before = state(rn32.model)
    model, batch = fare_model(rn32)
    encoder_before, norms_before = state(model.encoder), batch_norms(model.encoder)
    assert norms_before  # the ResNet tower has BatchNorm statistics to keep
    fare_steps(model, batch, 2, eps=8.0)
    tuned, norms = state(model.encoder), batch_norms(model.encoder)
    assert any(not torch.equal(tuned[k], encoder_before[k]) for k in tuned)  # weights train
    assert all(torch.equal(norms[k], norms_before[k]) for k in norms)  # statistics do not
    clip_after = state(rn32.model)
    assert all(torch.equal(clip_after[k], clip_before[k]) for k in clip_before)


def test_a_tuned_encoder_is_trainable_and_saved(rn32: ClipModel) -> None:
    encoder = ImageFeatureEncoder(rn32)
    frozen = FineTuneModel(encoder, LinearHead(encoder.out_dim, 3))
    tuned = FineTuneModel(encoder, LinearHead(encoder.out_dim, 3), tune_encoder=True)
    assert frozen.trained_parts == ("rectifier", "head")
    assert tuned.trained_parts == ("encoder", "rectifier", "head")
    assert {k.split(".")[0] for k in frozen.trainable_state_dict()} == {"head"}
    assert {k.split(".")[0] for k in tuned.trainable_state_dict()} == {"encoder", "head"}
    n_encoder = sum(p.numel() for p in encoder.parameters())
    n_head = sum(p.numel() for p in frozen.head.parameters())
    assert trainable_parameters(frozen) == (n_head, pytest.approx(n_head / (n_head + n_encoder)))
    assert trainable_parameters(tuned) == (n_head + n_encoder, 1.0)
    assert all(p.requires_grad for p in tuned.encoder.parameters())
    assert not any(p.requires_grad for p in rn32.model.visual.parameters())  # frozen in place


def test_encoder_parameters_its_output_does_not_use_are_not_trainable(rn32: ClipModel) -> None:
    # Patch tokens of a ResNet tower: its last stage's map, before the attention pool.
    tokens = ImageTokenEncoder(rn32)
    model = FineTuneModel(tokens, LinearHead(tokens.out_dim, 3), tune_encoder=True)
    frozen = {name for name, p in model.encoder.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith("visual.attnpool.") for name in frozen)
    n_pool = sum(p.numel() for p in rn32.model.visual.attnpool.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    assert trainable_parameters(model)[0] == n_all - n_pool
    assert set(model.trainable_state_dict()) >= {f"encoder.{name}" for name in frozen}  # saved


def test_param_groups_give_prefixed_parameters_their_own_lr(rn32: ClipModel) -> None:
    model, _ = fare_model(rn32)
    groups = param_groups(model, 0.1, (("encoder.", 1e-4),))
    assert [("lr" in g, g["weight_decay"]) for g in groups] == [
        (False, 0.1),
        (False, 0.0),
        (True, 0.1),
        (True, 0.0),
    ]
    encoder = {id(p) for p in model.encoder.parameters()}
    assert all(id(p) in encoder for g in groups[2:] for p in g["params"])
    assert not any(id(p) in encoder for g in groups[:2] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # Without group lrs, the two groups every training stage had before.
    assert len(param_groups(model, 0.1)) == 2


def test_the_text_prompt_head_is_the_zero_shot_classifier_at_init() -> None:
    clip = create_clip("medran-tiny", seed=0)
    dim = int(clip.model_cfg["embed_dim"])
    head = text_prompt_head(clip, CLASSES, PROMPTS, dim)
    tokenize = clip.tokenizer()
    with torch.no_grad():
        text = torch.stack(
            [
                F.normalize(
                    clip.model.encode_text(
                        tokenize([p.format(c.lower()) for p in PROMPTS]), normalize=True
                    ).mean(dim=0),
                    dim=-1,
                )
                for c in CLASSES
            ]
        )
        z = torch.randn(5, dim, generator=torch.Generator().manual_seed(0)) * 3.0
        expected = clip.model.logit_scale.exp() * F.normalize(z, dim=-1) @ text.T
        torch.testing.assert_close(head(z), expected)
    torch.testing.assert_close(class_embeddings(clip, CLASSES, PROMPTS), text)
    assert logit_scale(clip) == pytest.approx(float(clip.model.logit_scale.detach().exp()))
    assert [name for name, _ in head.named_parameters()] == ["bias"]  # text and scale fixed
    assert torch.equal(head.bias, torch.zeros(len(CLASSES)))
    assert set(head.state_dict()) == {"text", "scale", "bias"}
    with pytest.raises(InputError, match="pooled, projected CLIP embedding"):
        text_prompt_head(clip, CLASSES, PROMPTS, dim + 1)

"""Fine-tuning methods on hand-made batches, with a tiny stand-in for ``FineTuneModel``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medran.errors import InputError
from medran.methods import METHODS, RAN, get_method
from medran.methods.base import Method, trainable_parameters
from medran.methods.rectifier import Rectifier
from medran.methods.regularizers import covariance_term, mse_term, singular_value_term
from tests.helpers import section

DIM, CLASSES, SIZE = 8, 3, 8


def method_of(name: str, **changes: object) -> Method:
    """Method ``name`` with its params.yaml section, ``changes`` applied as params would be."""
    return get_method(name, section("finetune", **{name: changes}).method_config(name))


class Encoder(nn.Module):
    """Images -> (B, D) features, or (B, 4, D) patch tokens (the VQA layout)."""

    def __init__(self, tokens: bool):
        super().__init__()
        self.tokens = tokens
        self.proj = nn.Linear(3 * 4 * 4 if tokens else 3 * SIZE * SIZE, DIM)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.tokens:
            return self.proj(images.flatten(1))
        patches = images.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, 3, 2, 2, 4, 4)
        return self.proj(patches.permute(0, 2, 3, 1, 4, 5).reshape(len(images), 4, -1))


class Head(nn.Module):
    """(features, context) -> logits; tokens and question tokens are mean-pooled and added."""

    def __init__(self, kind: str):
        super().__init__()
        self.net = (
            nn.Linear(DIM, CLASSES)
            if kind == "linear"
            else nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, CLASSES))
        )

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        z = z.mean(dim=1) if z.ndim == 3 else z
        return self.net(z if context is None else z + context.mean(dim=1))


class StandIn(nn.Module):
    """The ``FineTuneModel`` contract: encoder (frozen unless the method tunes it), rectifier,
    head."""

    def __init__(self, method: Method, tokens: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = Encoder(tokens).requires_grad_(method.tunes_encoder)
        self.rectifier = method.build_rectifier(DIM)
        self.head = Head(method.head_type)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward_features(self, z: torch.Tensor, context: torch.Tensor | None = None):
        return self.head(self.rectifier(z), context)

    def forward(self, images: torch.Tensor, context: torch.Tensor | None = None):
        return self.forward_features(self.features(images), context)


def make_batch(model: StandIn, method: Method, vqa: bool = False, n: int = 12) -> dict:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n, 3, SIZE, SIZE, generator=g)
    batch = {"images": images, "targets": torch.randint(0, CLASSES, (n,), generator=g)}
    if vqa:
        batch["context"] = torch.randn(n, 5, DIM, generator=g)
    with torch.no_grad():  # what the feature cache holds: the encoder's features at the start
        batch["z"] = model.features(images)
    if not method.adversarial:  # cached features only; adversarial methods get both
        del batch["images"]
    return batch


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


# --- regularisers --------------------------------------------------------------------------


def test_covariance_term_is_zero_for_decorrelated_and_positive_for_correlated() -> None:
    # Centred, orthogonal columns: the covariance is diagonal.
    decorrelated = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert covariance_term(decorrelated).item() == 0.0
    correlated = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0], [-2.0, -2.0]])
    # cov = Z^T Z / (B - 1) = 10/3 everywhere; two off-diagonal entries, divided by D = 2.
    assert covariance_term(correlated).item() == pytest.approx((10 / 3) ** 2)
    tokens = correlated.unsqueeze(1).expand(4, 3, 2)  # the token mean is the same matrix
    assert covariance_term(tokens).item() == pytest.approx((10 / 3) ** 2)


def test_singular_value_term_matches_svdvals() -> None:
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(z)
    assert singular_value_term(z, k=3).item() == pytest.approx((s / s.sum())[:3].mean().item())
    tokens = torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(1))
    s = torch.linalg.svdvals(tokens.mean(dim=1))
    assert singular_value_term(tokens, k=5).item() == pytest.approx((s / s.sum())[:5].mean().item())
    rank_one = torch.ones(6, 1) @ torch.randn(1, 8)  # all of the spectrum in one direction
    assert singular_value_term(rank_one, k=1).item() == pytest.approx(1.0)


def test_mse_term_is_zero_for_the_same_direction_only() -> None:
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    assert mse_term(z, z).item() == 0.0
    assert mse_term(3 * z, z).item() == pytest.approx(0.0, abs=1e-12)  # normalised first
    assert mse_term(-z, z).item() == pytest.approx(4 / 8)  # |a - b|^2 = 4 per row, mean over D
    z_rect = z.clone().requires_grad_(True)
    mse_term(z_rect + 1, z_rect).backward()
    assert z_rect.grad is not None  # z' gets the gradient; the reference z is detached


def test_rectifier_is_identity_at_zero_scale_and_handles_tokens() -> None:
    rectifier = Rectifier(DIM, scale_init=0.0)
    z, tokens = torch.randn(5, DIM), torch.randn(5, 7, DIM)
    assert torch.equal(rectifier(z), z) and torch.equal(rectifier(tokens), tokens)
    rectifier = Rectifier(DIM)
    out = rectifier(tokens)
    assert out.shape == tokens.shape and not torch.allclose(out, tokens)
    # BatchNorm's statistics run over all 5 * 7 tokens (momentum 0.1 from a zero start).
    hidden = rectifier.mlp[0](tokens.reshape(-1, DIM)).detach()
    assert torch.allclose(rectifier.mlp[1].running_mean, 0.1 * hidden.mean(dim=0), atol=1e-6)
    assert rectifier.scale.shape == (DIM,) and torch.all(rectifier.scale == 0.1)
    with pytest.raises(ValueError, match="features"):
        rectifier(torch.randn(5, DIM + 1))


# --- methods -------------------------------------------------------------------------------


@pytest.mark.parametrize("vqa", [False, True], ids=["cls", "vqa"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_contract(name: str, vqa: bool) -> None:
    method = method_of(name)
    model = StandIn(method, tokens=vqa).train()
    objective = method.objective(F.cross_entropy)
    losses = objective(model, make_batch(model, method, vqa))
    assert isinstance(losses, dict) and torch.isfinite(losses["loss"])
    assert all(v.ndim == 0 for v in losses.values())
    losses["loss"].backward()
    updated = {name.split(".")[0] for name in grads(model)}
    expected = {"head"} | ({"rectifier"} if method.needs_rectifier else set())
    assert updated == expected | ({"encoder"} if method.tunes_encoder else set())
    if not method.tunes_encoder:
        assert all(p.grad is None for p in model.encoder.parameters())
    assert method.head_type in ("linear", "mlp")
    assert method.group_lrs == (
        {"encoder.": method.config.encoder_lr} if method.tunes_encoder else {}
    )


def test_registry_declares_what_each_method_needs() -> None:
    declared = {
        name: (m.head_type, m.needs_rectifier, m.adversarial, m.tunes_encoder)
        for name, m in ((name, method_of(name)) for name in METHODS)
    }
    assert declared == {
        "lp": ("linear", False, False, False),
        "mlp": ("mlp", False, False, False),
        "nmtune": ("linear", True, False, False),
        "ran": ("linear", True, True, False),
        "advft": ("linear", False, True, False),
        "fare": ("linear", False, True, True),
        "tecoa": ("linear", False, True, True),
    }
    assert method_of("ran", w_adv=0.0, w_rect=0.0).adversarial is False
    assert method_of("nmtune", head="mlp").head_type == "mlp"


def test_unknown_method_lists_the_names() -> None:
    with pytest.raises(InputError) as error:
        get_method("lora", section("finetune").lp)
    assert str(sorted(METHODS)) in str(error.value)


def test_configs_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(InputError, match=r"finetune\.nmtune\.w_mse = -1\.0"):
        method_of("nmtune", w_mse=-1.0)
    with pytest.raises(InputError, match=r"finetune\.ran\.w_adverserial: unknown key"):
        method_of("ran", w_adverserial=1.0)
    with pytest.raises(InputError, match=r"finetune\.advft\.head = 'transformer'"):
        method_of("advft", head="transformer")
    with pytest.raises(InputError, match=r"finetune\.ran\.steps = 'five'"):
        method_of("ran", steps="five")
    assert method_of("ran", eps=8).config.eps == 8.0  # ints are fine for float fields
    with pytest.raises(InputError, match="RANParams"):
        RAN(section("finetune").nmtune)
    with pytest.raises(InputError, match=r"finetune\.fare\.encoder_lr = 0\.0"):
        method_of("fare", encoder_lr=0.0)
    with pytest.raises(InputError, match=r"finetune\.fare\.eps = 300\.0"):
        method_of("fare", eps=300.0)
    with pytest.raises(InputError, match=r"finetune\.tecoa\.steps = 0"):
        method_of("tecoa", steps=0)


@pytest.mark.parametrize(
    "prompts", [["a chest x-ray of"], ["{} and {}"], ["a {name}"], ["{{}}"], ["a {"], []]
)
def test_a_prompt_template_without_one_placeholder_is_named(prompts: list[str]) -> None:
    with pytest.raises(InputError) as error:
        method_of("tecoa", prompts=["ok: {}.", *prompts] if prompts else [])
    message = str(error.value)
    assert "finetune.tecoa.prompts" in message and "exactly one '{}'" in message
    assert f"bad: {prompts}" in message


def test_zero_weight_skips_its_term() -> None:
    method = method_of("nmtune", w_svd=0.0, w_cov=0.0)
    model = StandIn(method).train()
    assert set(method.losses(model, make_batch(model, method), F.cross_entropy)) == {
        "loss",
        "task",
        "mse",
    }


def test_ran_adversarial_term_increases_the_loss_and_restores_modes() -> None:
    method = method_of("ran", eps=8.0)
    model = StandIn(method).train()
    model.encoder.eval()  # the owner keeps the frozen encoder in eval mode
    losses = method.losses(model, make_batch(model, method), F.cross_entropy)
    assert losses["adv"] > losses["task"]  # PGD found a harder batch
    assert losses["rect"] > 0
    assert model.training and model.rectifier.training and not model.encoder.training
    # BatchNorm updated once for the clean and once for the adversarial batch: the PGD steps
    # ran in eval mode and left its running statistics alone.
    assert model.rectifier.mlp[1].num_batches_tracked == 2


def test_ran_without_adversarial_weights_is_nmtune_exactly() -> None:
    results = []
    for method in (method_of("nmtune"), method_of("ran", w_adv=0.0, w_rect=0.0)):
        model = StandIn(method, seed=3).train()
        batch = make_batch(model, method)
        batch["images"] = torch.rand(12, 3, SIZE, SIZE)  # present, so an attack could run
        torch.manual_seed(7)
        losses = method.losses(model, batch, F.cross_entropy)
        losses["loss"].backward()
        results.append((losses, grads(model), torch.get_rng_state()))
    (nm_losses, nm_grads, nm_rng), (ran_losses, ran_grads, ran_rng) = results
    assert nm_losses.keys() == ran_losses.keys()
    assert all(torch.equal(nm_losses[k], ran_losses[k]) for k in nm_losses)
    assert nm_grads.keys() == ran_grads.keys()
    assert all(torch.equal(nm_grads[k], ran_grads[k]) for k in nm_grads)
    assert torch.equal(nm_rng, ran_rng)  # no random start was drawn

    # Positive control: with its weights on, RAN does draw the random starts.
    method = method_of("ran")
    model = StandIn(method).train()
    torch.manual_seed(7)
    method.losses(model, make_batch(model, method), F.cross_entropy)
    assert not torch.equal(torch.get_rng_state(), nm_rng)


def test_advft_trains_only_the_head() -> None:
    method = method_of("advft", w_clean=1.0)
    model = StandIn(method).train()
    assert isinstance(model.rectifier, nn.Identity)
    losses = method.losses(model, make_batch(model, method), F.cross_entropy)
    assert set(losses) == {"loss", "adv", "task"} and losses["adv"] > losses["task"]
    losses["loss"].backward()
    assert set(grads(model)) == {"head.net.weight", "head.net.bias"}


def test_adversarial_methods_need_images() -> None:
    method = method_of("advft")
    model = StandIn(method)
    batch = {"z": torch.randn(4, DIM), "targets": torch.zeros(4, dtype=torch.long)}
    with pytest.raises(InputError, match="images"):
        method.losses(model, batch, F.cross_entropy)


def test_fare_needs_the_pretrained_features_as_its_target() -> None:
    method = method_of("fare")
    model = StandIn(method)
    batch = make_batch(model, method)
    del batch["z"]
    with pytest.raises(InputError, match=r"'fare' needs the pre-trained encoder's features 'z'"):
        method.losses(model, batch, F.cross_entropy)


@pytest.mark.parametrize("vqa", [False, True], ids=["cls", "vqa"])
def test_fare_trains_the_encoder_on_its_loss_only_and_the_head_on_the_task(vqa: bool) -> None:
    method = method_of("fare", eps=8.0)
    model = StandIn(method, tokens=vqa).train()
    batch = make_batch(model, method, vqa)
    losses = method.losses(model, batch, F.cross_entropy)
    assert set(losses) == {"loss", "fare", "task"}
    assert losses["fare"] > 0  # PGD moved the features away from the pre-trained ones
    losses["task"].backward(retain_graph=True)
    assert set(grads(model)) == {"head.net.weight", "head.net.bias"}  # stopped at the features
    model.zero_grad(set_to_none=True)
    losses["fare"].backward()
    assert set(grads(model)) == {"encoder.proj.weight", "encoder.proj.bias"}


def test_fare_distance_is_the_squared_l2_distance_averaged_over_tokens() -> None:
    from medran.methods.fare import fare_distance

    a, b = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]])
    assert fare_distance(a, b).tolist() == [9.0, 9.0]
    tokens = torch.stack([a, b], dim=1)  # (2, 2, 3): one token at distance 0, one at 3
    assert fare_distance(tokens, torch.zeros_like(tokens)).tolist() == [4.5, 4.5]
    with pytest.raises(InputError, match="same shape"):
        fare_distance(a, tokens)


def test_tecoa_trains_encoder_and_head_on_pgd_examples() -> None:
    method = method_of("tecoa", eps=8.0, step_size=8.0)
    model = StandIn(method).train()
    batch = make_batch(model, method)
    with torch.no_grad():
        clean = F.cross_entropy(model(batch["images"]), batch["targets"])
    losses = method.losses(model, batch, F.cross_entropy)
    assert set(losses) == {"loss", "adv"} and losses["adv"] > clean
    losses["loss"].backward()
    assert {name.split(".")[0] for name in grads(model)} == {"encoder", "head"}


def test_trainable_fraction_counts_the_frozen_encoder() -> None:
    model = StandIn(method_of("nmtune"))
    encoder = 3 * SIZE * SIZE * DIM + DIM
    rectifier = (DIM * 4 * DIM + 4 * DIM) + 2 * 4 * DIM + (4 * DIM * DIM + DIM) + DIM
    head = DIM * CLASSES + CLASSES
    count, fraction = trainable_parameters(model)
    assert count == rectifier + head
    assert fraction == pytest.approx(count / (count + encoder))
    assert trainable_parameters(nn.Module()) == (0, 0.0)

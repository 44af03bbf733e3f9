"""White-box PGD/FGSM and robust metrics on a small trained linear model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from medran.attacks.pgd import Budget, eval_mode, fgsm, per_example_loss, pgd
from medran.errors import InputError
from medran.evaluation import robust
from medran.evaluation.robust import robust_metrics
from medran.models.wrappers import Normalize
from medran.names import ATTACKS
from medran.params import APGDParams, EvalRobustParams, PGDParams, PresetParams

EPS_LIST = [1, 2, 4, 8]


def preset(attacks: list[str], steps: int = 10, step_fraction: float = 0.25) -> PresetParams:
    """A protocol of ``attacks``: ``steps`` each, PGD's step ``step_fraction`` x eps."""
    return PresetParams(
        attacks=attacks,
        max_examples=0,
        apgd=APGDParams(steps=steps, restarts=1, targets=9),
        pgd=PGDParams(steps=steps, restarts=1, step_fraction=step_fraction),
    )


def settings(attacks: tuple[str, ...] = ("pgd",), **changes: Any) -> EvalRobustParams:
    """The robust evaluation of these tests: by default PGD alone, 10 steps of eps / 4."""
    values = {
        "eps": EPS_LIST,
        "large_eps": 32.0,
        "preset": "default",
        "presets": {"default": preset(list(attacks)), "full": preset(list(ATTACKS), 100, 0.025)},
        "near_zero": 0.1,
        "tolerance": 0.02,
        "batch_size": 100,
        "device": "cpu",
        "seed": 0,
    }
    return EvalRobustParams(**(values | changes))


def exact_match(pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) bool: an index equals its target; a label vector is right only if every label is."""
    equal = pred == targets.to(pred.dtype)
    return equal.reshape(equal.shape[0], -1).all(dim=1)


@dataclass(frozen=True)
class Scorer:
    """A task's loss, prediction and correctness (multi-class by default)."""

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor], torch.Tensor] = lambda logits: logits.argmax(dim=-1)
    correct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = exact_match


CE = Scorer(F.cross_entropy)


def ce(forward: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor) -> Callable:
    """The cross-entropy score PGD and FGSM ascend."""
    return lambda adv: F.cross_entropy(forward(adv), y)


def data(n: int, seed: int, size: int = 8, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Class patterns weak enough that robust accuracy falls over 1-8/255 (not trivial)."""
    patterns = torch.randn(classes, 3, size, size, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = 0.5 + 0.03 * patterns[y] + 0.1 * torch.randn(n, 3, size, size, generator=g)
    return x.clamp(0, 1), y


def train(net: nn.Module, lr: float, steps: int = 200, classes: int = 3) -> nn.Module:
    x, y = data(400, 0, classes=classes)
    # Plain gradient descent: building a torch.optim optimizer costs seconds of imports.
    for _ in range(steps):
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return train(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)), lr=2.0)


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    """A non-linear model, normalising inside as the real wrappers do."""
    torch.manual_seed(1)
    layers = [nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 3)]
    return train(nn.Sequential(Normalize((0.5,) * 3, (0.1,) * 3), *layers), lr=0.05)


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    return data(200, 1)


class Quantised(nn.Module):
    """Gradient masking by construction: rounding to uint8 levels has a zero gradient."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 255) / 255)


def reference_pgd(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int
) -> torch.Tensor:
    """Textbook PGD (Madry et al.), written independently of the library."""
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(net(x_adv), y), x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_adversarial_images_stay_in_budget_and_pixel_range(model: nn.Module) -> None:
    x, y = data(16, 2)
    x[:, :, :2] = 0.0  # extreme pixels, where the ball is cut by [0, 1]
    x[:, :, -2:] = 1.0
    eps = 8 / 255
    for adv in (
        pgd(ce(model, y), x, Budget(eps, 2 / 255, 10, random_start=True)),
        fgsm(ce(model, y), x, eps),
    ):
        assert adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() <= eps + 1e-6
        assert not adv.requires_grad


def test_pgd_loss_beats_fgsm_beats_clean(model: nn.Module, test_set: tuple) -> None:
    x, y = test_set
    eps = 4 / 255
    clean = F.cross_entropy(model(x), y)
    after_fgsm = F.cross_entropy(model(fgsm(ce(model, y), x, eps)), y)
    budget = Budget(eps, eps / 4, 10, random_start=True)
    after_pgd = F.cross_entropy(model(pgd(ce(model, y), x, budget)), y)
    assert after_pgd >= after_fgsm > clean


def test_restarts_keep_the_highest_loss_per_example(model: nn.Module) -> None:
    x, y = data(32, 3)
    losses = []

    def rank(adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fooled = torch.zeros(len(adv), dtype=torch.bool)  # none: the higher loss wins
        return fooled, per_example_loss(F.cross_entropy, model(adv), y)

    for restarts in (1, 3):
        g = torch.Generator().manual_seed(5)  # restart 1 of 3 is the single run
        budget = Budget(2 / 255, 0.5 / 255, 2, random_start=True, restarts=restarts)
        adv = pgd(ce(model, y), x, budget, g, rank)
        losses.append(per_example_loss(F.cross_entropy, model(adv), y))
    assert torch.all(losses[1] >= losses[0] - 1e-6)
    assert torch.any(losses[1] > losses[0])


def test_robust_accuracy_falls_with_eps_to_zero_and_checks_pass(
    model: nn.Module, test_set: tuple
) -> None:
    x, y = test_set
    report = robust_metrics(
        model,
        [{"images": x[:100], "targets": y[:100]}, {"images": x[100:], "targets": y[100:]}],
        CE,
        settings(),
    )
    curve = [report.robust_accuracy[e] for e in [*EPS_LIST, 32]]
    assert report.clean_accuracy > 0.85 and report.n == 200
    assert curve[0] > curve[-2] + 0.3  # the benchmark is not trivial either way
    assert all(b <= a for a, b in pairwise(curve))
    assert curve[-1] <= 0.02
    assert report.attack_success_rate[32] == 1.0
    assert all(report.checks.values()) and not report.gradient_masking_suspected
    metrics = report.as_metrics()
    assert metrics["robust_accuracy_eps8"] == report.robust_accuracy[8]
    assert metrics["gradient_masking_suspected"] == 0.0
    assert all(isinstance(v, float) for v in metrics.values())


@pytest.mark.parametrize("name", ["model", "mlp"])
def test_matches_an_independent_reference_pgd_within_one_point(
    name: str, test_set: tuple, request: pytest.FixtureRequest
) -> None:
    net = request.getfixturevalue(name)
    x, y = test_set
    batches = [{"images": x, "targets": y}]
    report = robust_metrics(net, batches, CE, settings())
    torch.manual_seed(0)  # the same seed as robust_metrics' own (seed=0)
    for eps in EPS_LIST:
        adv = reference_pgd(net, x, y, eps / 255, 0.25 * eps / 255, 10)
        reference = (net(adv).argmax(dim=1) == y).float().mean().item()
        assert abs(report.robust_accuracy[eps] - reference) <= 0.01, eps
    assert report.robust_accuracy[8] < report.clean_accuracy - 0.5  # a real attack


def test_masking_checks_fire_on_a_quantising_model(model: nn.Module, test_set: tuple) -> None:
    x, y = test_set
    report = robust_metrics(Quantised(model), [{"images": x, "targets": y}], CE, settings())
    assert report.gradient_masking_suspected
    assert not report.checks["near_zero_at_large_eps"]
    assert report.robust_accuracy[8] == report.clean_accuracy  # the attack never moved


def first(k: int, n: int = 100) -> torch.Tensor:
    """Per example of ``n``: the first ``k`` right."""
    return torch.arange(n) < k


def tally(
    pgd_right: list[int],
    fgsm_right: list[int],
    blind: int = 0,
    context: bool = False,
    flat: int = 0,
) -> robust._Tally:
    """100 examples, 90 right on clean; how many stay right per eps (1, 8, 32)."""
    eps = [1.0, 8.0, 32.0]
    return robust._Tally(
        first(90),
        {e: first(k) for e, k in zip(eps, pgd_right, strict=True)},
        {e: first(k) for e, k in zip(eps, fgsm_right, strict=True)},
        first(blind),
        first(flat),
        context,
    )


def test_each_check_fires_on_its_own_symptom() -> None:
    def checks(pgd_right: list[int], fgsm_right: list[int]) -> dict[str, bool]:
        return robust._report(tally(pgd_right, fgsm_right), settings()).checks

    assert all(checks([80, 40, 0], [85, 50, 5]).values())
    assert not checks([80, 40, 30], [85, 50, 40])["near_zero_at_large_eps"]
    assert not checks([80, 40, 0], [60, 30, 0])["attacks_at_least_fgsm"]
    flat = robust._report(tally([80, 40, 0], [85, 50, 5], flat=1), settings())
    assert not flat.checks["image_gradient_nonzero"] and flat.zero_gradient == 0.01
    # With a question the attack cannot touch, "near zero" is near the image-blind accuracy.
    with_blind = robust._report(tally([80, 40, 30], [85, 50, 40], 30, context=True), settings())
    assert with_blind.checks["near_zero_at_large_eps"]
    # Without one, the blind accuracy excuses nothing.
    without = robust._report(tally([80, 40, 30], [85, 50, 40], 30), settings())
    assert not without.checks["near_zero_at_large_eps"]
    assert with_blind.as_metrics()["blind_accuracy"] == 0.3
    # Every example's outcome is kept, under the metrics' keys, for the report's intervals.
    assert with_blind.outcomes["robust_accuracy_eps8"].sum() == 40
    assert with_blind.outcomes["clean_accuracy"].tolist() == [1] * 90 + [0] * 10


def test_non_positive_eps_fails_before_any_work() -> None:
    calls = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x.flatten(1)[:, :3]

    x, y = data(4, 0)
    with pytest.raises(InputError, match="eps"):
        pgd(ce(forward, y), x, Budget(0.0, 1 / 255, 5, random_start=True))
    with pytest.raises(InputError, match="eps"):
        fgsm(ce(forward, y), x, -1 / 255)
    net = nn.Linear(1, 1)
    net.forward = forward
    unchecked = settings().model_copy(update={"eps": [0, 4]})  # as if built without validation
    with pytest.raises(InputError, match="eps"):
        robust_metrics(net, [{"images": x, "targets": y}], CE, unchecked)
    assert not calls


class Context(NamedTuple):
    """Question tokens and their mask, as VQA batches carry them."""

    tokens: torch.Tensor
    mask: torch.Tensor


def test_multilabel_exact_match_and_context_batches() -> None:
    class WithContext(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3 * 8 * 8, 4)

        def forward(self, images: torch.Tensor, context: Context) -> torch.Tensor:
            question = (context.tokens * context.mask.unsqueeze(-1)).sum(dim=1)
            return self.fc(images.flatten(1)) + question

    torch.manual_seed(0)
    net = WithContext()
    x, _ = data(24, 4)
    context = Context(torch.randn(24, 5, 4), torch.rand(24, 5) > 0.3)
    with torch.no_grad():
        targets = (net(x, context) > 0).float()
    targets[:4] = 1 - targets[:4]  # four examples start wrong: never attacked, never robust
    report = robust_metrics(
        net,
        [{"images": x, "targets": targets, "context": context}],
        Scorer(F.binary_cross_entropy_with_logits, predict=lambda logits: logits > 0),
        settings(eps=[1, 8]),
    )
    assert report.clean_accuracy == pytest.approx(20 / 24)
    assert report.robust_accuracy[32] < report.robust_accuracy[1] <= 20 / 24


class QuestionOrImage(nn.Module):
    """A VQA-like model: the question alone fixes the answer of the first half of the examples
    (large logits); the image decides the rest."""

    def __init__(self, image_model: nn.Module):
        super().__init__()
        self.image_model = image_model

    def forward(self, images: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.image_model(images) + context


def test_near_zero_check_uses_the_question_only_accuracy(model: nn.Module, test_set: tuple) -> None:
    x, y = test_set
    context = torch.zeros(len(y), 3)
    half = len(y) // 2
    context[torch.arange(half), y[:half]] = 100.0  # answered by the question alone
    batches = [{"images": x, "targets": y, "context": context}]

    report = robust_metrics(QuestionOrImage(model), batches, CE, settings())
    # Blind: the question half, plus image-half examples another image happens to get right.
    assert 0.5 <= report.blind_accuracy < 0.8
    assert report.robust_accuracy[32] == 0.5  # the attack removes all the image gets right
    assert not report.gradient_masking_suspected

    masked = robust_metrics(QuestionOrImage(Quantised(model)), batches, CE, settings())
    assert not masked.checks["near_zero_at_large_eps"]  # the image half never moved


def test_eval_mode_restores_each_module_flag() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    net.train()
    net[0].eval()  # e.g. a frozen encoder its owner keeps in eval mode
    with eval_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == [True, False, True, True]

"""APGD and the attack protocol, against torchattacks' independent implementation."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn
from torch.nn import functional as F

from medran.attacks.apgd import apgd
from medran.errors import InputError
from medran.evaluation.protocol import check_protocol, targeted_loss
from medran.evaluation.robust import robust_metrics
from medran.models.wrappers import Normalize
from tests.unit.test_pgd import CE, EPS_LIST, QuestionOrImage, Scorer, data, preset, settings, train

N_CLASSES = 5


@pytest.fixture(scope="module")
def net() -> nn.Module:
    """A small non-linear classifier of 5 classes (APGD-T needs at least 4)."""
    torch.manual_seed(2)
    layers = [nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, N_CLASSES)]
    return train(nn.Sequential(Normalize((0.5,) * 3, (0.1,) * 3), *layers), lr=0.05, classes=5)


@pytest.fixture(scope="module")
def test_set() -> tuple[torch.Tensor, torch.Tensor]:
    return data(200, 1, classes=N_CLASSES)


def objective(net: nn.Module, y: torch.Tensor):
    def run(adv: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = net(adv)
        return F.cross_entropy(logits, y[rows], reduction="none"), logits.argmax(1) != y[rows]

    return run


def test_apgd_stays_in_budget_and_reports_what_it_fooled(net: nn.Module, test_set: tuple) -> None:
    x, y = test_set
    eps = 4 / 255
    adv, fooled = apgd(objective(net, y), x, eps, 20, torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(fooled, net(adv).argmax(1) != y)
    assert 0 < fooled.float().mean() < 1  # the budget breaks some examples, not all


def test_bad_budget_fails_before_any_work(net: nn.Module, test_set: tuple) -> None:
    x, y = test_set
    for eps, steps in [(0.0, 10), (-1.0, 10), (4 / 255, 0)]:
        with pytest.raises(InputError, match="eps"):
            apgd(objective(net, y), x, eps, steps, torch.Generator())


def torchattacks_accuracy(attack: torchattacks.Attack, x: torch.Tensor, y: torch.Tensor) -> int:
    adv = attack(x, y)
    with torch.no_grad():
        return int((attack.model(adv).argmax(1) == y).sum())


@pytest.mark.parametrize("attacks", [["apgd-ce"], ["apgd-ce", "apgd-t"]])
def test_robust_accuracy_matches_torchattacks_within_one_example(
    attacks: list[str], net: nn.Module, test_set: tuple
) -> None:
    x, y = test_set
    params = settings(
        eps=[1.0, 2.0, 4.0], presets={"default": preset(attacks, steps=50), "full": preset(attacks)}
    )
    report = robust_metrics(net, [{"images": x, "targets": y}], CE, params)
    for eps in params.eps:
        # torchattacks' robust accuracy is per eps, not cumulative, as medran's is: medran's
        # can only be lower, by what a smaller eps broke and this one missed.
        reference = torchattacks.APGD(net, eps=eps / 255, steps=50, seed=0)
        right = torchattacks_accuracy(reference, x, y)
        if "apgd-t" in attacks:
            adv = torchattacks.APGDT(net, eps=eps / 255, steps=50, n_classes=N_CLASSES, seed=0)
            right = min(right, torchattacks_accuracy(adv, x, y))
        ours = round(report.robust_accuracy[eps] * len(y))
        assert abs(ours - right) <= 1, (eps, ours, right)
    assert report.robust_accuracy[4.0] < report.clean_accuracy - 0.3  # a real attack


def test_targeted_attacks_are_at_least_as_strong(net: nn.Module, test_set: tuple) -> None:
    x, y = test_set
    batches = [{"images": x, "targets": y}]
    untargeted = robust_metrics(net, batches, CE, settings(("apgd-ce",)))
    both = robust_metrics(net, batches, CE, settings(("apgd-ce", "apgd-t")))
    for eps in EPS_LIST:
        assert both.robust_accuracy[eps] <= untargeted.robust_accuracy[eps] + 0.01


@pytest.mark.parametrize("attacks", [("apgd-ce",), ("apgd-ce", "apgd-t"), ("pgd",)])
def test_the_question_follows_each_example(attacks: tuple[str, ...], net: nn.Module) -> None:
    """APGD drops the examples it broke mid-run: a question that did not follow its example
    would break the question-answered half or protect image-answered ones."""
    x, y = data(200, 1, classes=N_CLASSES)
    context = torch.zeros(len(y), N_CLASSES)
    half = len(y) // 2
    context[torch.arange(half), y[:half]] = 100.0  # answered by the question alone
    batches = [{"images": x, "targets": y, "context": context}]
    report = robust_metrics(QuestionOrImage(net), batches, CE, settings(attacks))
    assert report.robust_accuracy[32] == 0.5
    assert report.outcomes["robust_accuracy_eps32"][:half].all()


def test_multilabel_attacks_break_any_label() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6)).eval()
    x, _ = data(64, 3)
    with torch.no_grad():
        targets = (net(x) > 0).float()
    task = Scorer(F.binary_cross_entropy_with_logits, predict=lambda logits: logits > 0)
    batches = [{"images": x, "targets": targets}]
    for attacks in [("apgd-ce",), ("apgd-t",)]:
        report = robust_metrics(net, batches, task, settings(attacks))
        assert report.clean_accuracy == 1.0
        assert report.robust_accuracy[32] == 0.0 < report.robust_accuracy[1]
    # The targeted loss of a label is minus its signed margin: ascending it flips that label.
    logits = torch.tensor([[2.0, -1.0]])
    aims = torch.tensor([0])
    assert targeted_loss(logits, torch.tensor([[1.0, 0.0]]), aims).item() == -2.0


def test_apgd_t_on_fewer_than_four_classes_fails_listing_the_allowed() -> None:
    with pytest.raises(InputError, match=r"apgd-t needs at least 4 classes.*'apgd-ce', 'pgd'"):
        check_protocol(preset(["apgd-ce", "apgd-t"]), 3, "cls")
    check_protocol(preset(["apgd-ce", "pgd"]), 3, "cls")


def test_a_model_that_ignores_its_image_is_flagged_not_robust(test_set: tuple) -> None:
    x, y = test_set

    class Blind(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(N_CLASSES))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(len(images), -1) + 0 * images.flatten(1)[:, :N_CLASSES]

    report = robust_metrics(Blind(), [{"images": x, "targets": y}], CE, settings(("apgd-ce",)))
    assert report.zero_gradient == report.clean_accuracy > 0
    assert not report.checks["image_gradient_nonzero"] and report.gradient_masking_suspected

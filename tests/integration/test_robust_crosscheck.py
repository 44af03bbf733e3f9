"""medran's robust accuracy against torchattacks' APGD-CE + APGD-T run directly, on small
medran models the finetune stage trained: a single-label classifier and a VQA model.

torchattacks is installed without its dependencies from ``requirements-reference.lock``
(docs/study.md, "Robust protocol"). It has no way to carry VQA's question with each example,
so it attacks the VQA model one example at a time, the question fixed by a wrapper.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchattacks
from torch import nn

from medran import layout
from medran.contracts import FinetunePaths
from medran.evaluation.robust import robust_metrics
from medran.models.factory import create_clip, load_local_dir, save_local_dir
from medran.models.finetuned import load_finetuned, seed_dir
from medran.params import APGDParams, PGDParams, PresetParams
from medran.pipeline import finetune
from medran.tasks import make_task
from tests.helpers import project_params
from tests.integration.conftest import SMALL, make_data_root

STEPS, TARGETS, N = 50, 3, 40
# Per task, a budget (1/255) at which some examples of these weak models survive and some do
# not, so the comparison is not 0 = 0 or clean = clean.
EPS = {"cls": 0.25, "vqa": 4.0}
SINGLE_LABEL = {"cls": {"multi_label": False, "normalize_features": True}}
FINETUNE = {"seeds": [0], "epochs": 4, "batch_size": 8, "methods": ["lp"]} | SINGLE_LABEL


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    synth = SMALL | {"multi_label_fraction": 0.0, "n_cls_patients": 40}
    return make_data_root(tmp_path_factory.mktemp("single-label"), synth)


@pytest.fixture(scope="module")
def pretrain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pretrain") / "0.0"
    save_local_dir(create_clip("medran-tiny", seed=0), folder)
    (folder / "run.json").write_text(json.dumps({"run_id": "pretrain-run"}))
    return folder


def trained(root: Path, pretrain_dir: Path, work: Path, task_name: str):
    """The lp model the finetune stage trains, its task, and N training examples."""
    params = project_params(experiment="crosscheck", finetune=FINETUNE | {"tasks": [task_name]})
    out = work / task_name
    paths = FinetunePaths(
        root, pretrain_dir, out, work / "cache", work / "m.json", work / f"{task_name}.npz"
    )
    finetune.run(params, paths=paths, level=0.0, task=task_name, method="lp")
    clip = load_local_dir(pretrain_dir)
    options = SINGLE_LABEL["cls"] if task_name == "cls" else {}
    task = make_task(task_name, root / layout.PREPARED, **options)
    split = task.with_context(task.load_split("train", clip.image_size), clip)
    items = [split[i] for i in range(min(N, len(split)))]
    batch = {k: torch.utils.data.default_collate([it[k] for it in items]) for k in items[0]}
    return load_finetuned(seed_dir(out, 0), clip, task), task, batch


def medran_right(model: nn.Module, task, batch: dict) -> tuple[int, int]:
    """(robust, clean) counts of medran's evaluation at the task's eps."""
    eps = EPS[task.name]
    preset = PresetParams(
        attacks=["apgd-ce", "apgd-t"],
        max_examples=0,
        apgd=APGDParams(steps=STEPS, restarts=1, targets=TARGETS),
        pgd=PGDParams(steps=1, restarts=1, step_fraction=1.0),
    )
    params = project_params(
        eval_robust={"eps": [eps], "large_eps": eps, "presets": {"default": preset.model_dump()}}
    ).eval_robust
    batches = [{k: batch[k] for k in ("images", "targets", "context") if k in batch}]
    report = robust_metrics(model, batches, task, params)
    return round(report.robust_accuracy[eps] * report.n), round(report.clean_accuracy * report.n)


class FixedQuestion(nn.Module):
    """The VQA model with one example's question, as torchattacks can call it."""

    def __init__(self, model: nn.Module, context):
        super().__init__()
        self.model, self.context = model, context

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        context = type(self.context)(*(t.expand(len(images), *t.shape[1:]) for t in self.context))
        return self.model(images, context)


def torchattacks_right(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per example of the batch: right after torchattacks' APGD-CE, then APGD-T."""
    with torch.no_grad():
        right = model(images).argmax(1) == labels
    for attack in (
        torchattacks.APGD(model, eps=eps / 255, steps=STEPS, seed=0),
        torchattacks.APGDT(model, eps=eps / 255, steps=STEPS, n_classes=TARGETS + 1, seed=0),
    ):
        adv = attack(images, labels)
        with torch.no_grad():
            right &= model(adv).argmax(1) == labels
    return right


def test_single_label_classifier_matches_torchattacks(
    root: Path, pretrain_dir: Path, tmp_path: Path
) -> None:
    model, task, batch = trained(root, pretrain_dir, tmp_path, "cls")
    ours, clean = medran_right(model, task, batch)
    right = torchattacks_right(model.eval(), batch["images"], batch["targets"], EPS["cls"])
    theirs = int(right.sum())
    assert abs(ours - theirs) <= 1, (ours, theirs)
    assert 0 < theirs < clean  # the budget breaks some examples and not all


def test_vqa_model_matches_torchattacks_one_example_at_a_time(
    root: Path, pretrain_dir: Path, tmp_path: Path
) -> None:
    model, task, batch = trained(root, pretrain_dir, tmp_path, "vqa")
    ours, clean = medran_right(model, task, batch)
    theirs = 0
    for i in range(len(batch["targets"])):
        context = type(batch["context"])(*(t[i : i + 1] for t in batch["context"]))
        wrapped = FixedQuestion(model, context).eval()
        image, label = batch["images"][i : i + 1], batch["targets"][i : i + 1]
        theirs += int(torchattacks_right(wrapped, image, label, EPS["vqa"]).sum())
    assert abs(ours - theirs) <= 1, (ours, theirs)
    assert 0 < theirs < clean

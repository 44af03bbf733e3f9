"""``fare`` and ``tecoa`` models on the prepared tasks: TeCoA's classification head is CLIP's
zero-shot classifier of the task's classes, and a tuned model saves and loads back exactly
(encoder included) on the pre-trained model it started from, and only on that one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from torch.utils.data import default_collate

from medran.errors import InputError
from medran.methods import Method, get_method
from medran.models.factory import ClipModel, create_clip
from medran.models.finetune import FineTuneModel, weights_hash
from medran.models.finetuned import WEIGHTS_FILE, build_model, load_finetuned, save_finetuned
from medran.models.zeroshot import class_embeddings, logit_scale
from medran.params import FinetuneParams
from medran.pipeline.finetune import head_options, task_options
from medran.tasks import Task, make_task
from medran.tasks.features import encode_split
from medran.training.loop import param_groups
from tests.helpers import section

ENCODER_METHODS = ("fare", "tecoa")


@pytest.fixture(scope="module")
def params() -> FinetuneParams:
    # Large training budgets, so that a few steps move every part of the model.
    attack = {"eps": 16.0, "step_size": 16.0, "encoder_lr": 1e-3}
    return section("finetune", vqa={"width": 32}, fare=attack, tecoa=attack)


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    """A ResNet tower: its BatchNorm statistics are part of what must round-trip."""
    return create_clip("medran-rn32", seed=0)


def setup(
    data_root: Path, clip: ClipModel, params: FinetuneParams, task_name: str, method_name: str
) -> tuple[Task, Method, FineTuneModel, dict]:
    """The task, method, a new model and a training batch as the finetune stage builds them."""
    task = make_task(task_name, data_root / "prepared", **task_options(params, task_name))
    method = get_method(method_name, params.method_config(method_name))
    torch.manual_seed(0)
    model = build_model(task, clip, method, head_options(params, task_name, method.head_type))
    split = task.with_context(task.load_split("train", clip.image_size), clip)
    batch = default_collate([split[i] for i in range(8)])
    with torch.no_grad():  # what the feature cache gives WithImages: pre-trained features
        batch["z"] = encode_split(task.build_encoder(clip), split.images, 64)[split.image_index[:8]]
    return task, method, model, batch


def train_steps(model: FineTuneModel, method: Method, task: Task, batch: dict, steps: int) -> None:
    groups = param_groups(model, 0.0, tuple(method.group_lrs.items()))
    optimizer = torch.optim.AdamW(groups, lr=method.config.lr)
    for _ in range(steps):
        losses = method.losses(model.train(), batch, task.loss_fn)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()


def saved_config(task: Task, method: Method, params: FinetuneParams) -> dict:
    """What the finetune stage saves with each model, enough to rebuild it."""
    return {
        "stage": f"finetune@0.0-{task.name}-{method.name}",
        "level": 0.0,
        "task": task.name,
        "task_options": task_options(params, task.name),
        "method": method.name,
        "method_config": method.config.model_dump(),
        "head": method.head_type,
        "head_options": head_options(params, task.name, method.head_type),
        "classes": task.classes,
        "upstream_run_id": None,
        "seed": 0,
    }


def test_tecoa_classifies_by_the_class_prompts_zero_shot_at_init(
    data_root: Path, clip: ClipModel, params: FinetuneParams
) -> None:
    task, method, model, batch = setup(data_root, clip, params, "cls", "tecoa")
    text = class_embeddings(clip, task.classes, params.tecoa.prompts)
    assert text.shape[0] == len(task.classes)
    with torch.no_grad():
        logits = model(batch["images"])
        z = model.features(batch["images"])
    expected = logit_scale(clip) * F.normalize(z, dim=-1) @ text.T
    torch.testing.assert_close(logits, expected)
    # The head's only parameter is the per-class bias; the encoder is trained with it.
    assert [name for name, _ in model.head.named_parameters()] == ["bias"]
    with pytest.raises(InputError, match="takes no head options"):
        method.build_head(task, model.encoder, clip, {"hidden": 8})


@pytest.mark.parametrize("task_name", ["cls", "vqa"])
@pytest.mark.parametrize("method_name", ENCODER_METHODS)
def test_a_tuned_model_saves_and_loads_back_exactly(
    data_root: Path,
    clip: ClipModel,
    params: FinetuneParams,
    tmp_path: Path,
    task_name: str,
    method_name: str,
) -> None:
    clip_hash = weights_hash(clip.model)
    task, method, model, batch = setup(data_root, clip, params, task_name, method_name)
    pretrained = weights_hash(model.encoder)
    train_steps(model, method, task, batch, 2)
    assert weights_hash(model.encoder) != pretrained  # the encoder did train

    saved = save_finetuned(tmp_path, model, saved_config(task, method, params), None)
    assert saved.encoder_hash == pretrained == weights_hash(task.build_encoder(clip))
    loaded = load_finetuned(tmp_path, clip, task)
    assert not loaded.training and not loaded.encoder.training
    assert weights_hash(loaded.encoder) == weights_hash(model.encoder)
    context = batch.get("context")
    with torch.no_grad():
        assert torch.equal(loaded(batch["images"], context), model.eval()(batch["images"], context))
    assert weights_hash(clip.model) == clip_hash  # neither training nor loading changed it

    other = create_clip("medran-rn32", seed=1)
    with pytest.raises(InputError, match="another pre-trained model"):
        load_finetuned(tmp_path, other, task)


def test_weights_that_do_not_fit_the_config_are_named(
    data_root: Path, clip: ClipModel, params: FinetuneParams, tmp_path: Path
) -> None:
    task, method, model, _ = setup(data_root, clip, params, "cls", "fare")
    save_finetuned(tmp_path, model, saved_config(task, method, params), None)
    weights = tmp_path / WEIGHTS_FILE
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if not k.startswith("encoder.")}, weights)
    with pytest.raises(InputError, match=r"its encoder weights do not fit the 'fare' model"):
        load_finetuned(tmp_path, clip, task)
    save_file(state | {"rectifier.scale": torch.ones(3)}, weights)  # fare has no rectifier
    with pytest.raises(InputError, match=r"its rectifier weights do not fit the 'fare' model"):
        load_finetuned(tmp_path, clip, task)
    save_file(state | {"projector.weight": torch.ones(3)}, weights)
    with pytest.raises(InputError, match=r"holds \['projector'\] weights, which a 'fare' model"):
        load_finetuned(tmp_path, clip, task)

"""Downstream tasks on a small prepared data root with a random-init tiny CLIP."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import open_clip
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from medran import layout
from medran.data.errors import DataError
from medran.errors import InputError
from medran.methods.base import trainable_parameters
from medran.models.factory import ClipModel, create_clip
from medran.models.finetune import LinearHead, TextTokenEncoder
from medran.tasks import TASKS, ClsTask, VqaTask, make_task
from medran.tasks.features import cached_features, encode_split, feature_key

HEAD_OPTIONS = {
    "cls": {},
    "vqa": {"depth": 1, "width": 32, "heads": 4, "mlp_ratio": 2.0, "dropout": 0.1},
}


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    return create_clip("medran-tiny", seed=0)


@pytest.fixture(scope="module")
def prepared(data_root: Path) -> Path:
    return data_root / layout.PREPARED


def edited(prepared: Path, tmp_path: Path, role: str, edit: Callable[[pd.DataFrame], None]) -> Path:
    """A prepared root in ``tmp_path`` whose ``role`` manifest is a copy changed by ``edit``."""
    frame = pd.read_parquet(prepared / f"{role}.parquet")
    edit(frame)
    root = tmp_path / "prepared"
    root.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(root / f"{role}.parquet", index=False)
    return root


def test_unknown_task_and_head_list_the_valid_names(prepared: Path, clip: ClipModel) -> None:
    with pytest.raises(InputError, match=r"unknown task 'seg'; valid tasks: \['cls', 'vqa'\]"):
        make_task("seg", prepared)
    with pytest.raises(InputError, match=r"unknown head 'svm'; valid heads: \['linear', 'mlp'\]"):
        make_task("cls", prepared).build_model(clip, head="svm")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_trains_a_batch_and_scores_a_split(name: str, prepared: Path, clip: ClipModel) -> None:
    task = make_task(name, prepared)
    train = task.with_context(task.load_split("train", clip.image_size), clip)
    model = task.build_model(clip, head="mlp", rectifier=nn.Identity(), **HEAD_OPTIONS[name])
    batch = next(iter(DataLoader(train, batch_size=4, shuffle=False)))
    images = batch["images"].requires_grad_()
    assert images.min() >= 0.0 and images.max() <= 1.0
    loss = task.loss_fn(model.train()(images, batch.get("context")), batch["targets"])
    loss.backward()
    assert torch.isfinite(loss) and images.grad.abs().sum() > 0  # attacks need this gradient
    assert all(p.grad is not None for p in model.head.parameters())
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert 0 < trainable_parameters(model)[1] < 1

    test = task.with_context(task.load_split("test", clip.image_size), clip)
    logits = model.eval()(test.images.float() / 255, _full_context(test))[test.image_index]
    metrics = task.metrics(logits, test.targets, test.rows)
    assert metrics["n"] == len(test.rows)
    for key in ("accuracy", "closed_accuracy", "open_accuracy", "macro_f1", "auroc"):
        assert key not in metrics or 0.0 <= metrics[key] <= 1.0, (key, metrics)
    correct = task.correct(task.predict(logits), test.targets)
    assert correct.shape == (len(test.rows),)
    assert float(correct.float().mean()) == pytest.approx(metrics["accuracy"])


def _full_context(split):
    """The context of each distinct image's first row (enough to score every image once)."""
    if split.context is None:
        return None
    first = [int((split.image_index == j).nonzero()[0]) for j in range(len(split.images))]
    index = split.context_index[first]
    return type(split.context)(split.context.tokens[index], split.context.mask[index])


def test_vqa_test_rows_are_scored_row_by_row(prepared: Path, clip: ClipModel) -> None:
    task = make_task("vqa", prepared)
    test = task.with_context(task.load_split("test", clip.image_size), clip)
    assert len(test.images) < len(test.rows)  # each image decoded once, shared by questions
    model = task.build_model(clip, **HEAD_OPTIONS["vqa"]).eval()
    features = test.with_features(encode_split(model, test.images, batch_size=8))
    batch = next(iter(DataLoader(features, batch_size=len(features))))
    assert batch["z"].shape[1:] == (64, model.encoder.out_dim)  # tokens, not pooled
    assert batch["context"].mask.dtype == torch.bool
    logits = model.forward_features(batch["z"], batch["context"])
    metrics = task.metrics(logits, batch["targets"], test.rows)
    assert metrics["n_closed"] + metrics["n_open"] == len(test.rows)
    assert metrics["n_closed"] > 0


def test_cls_is_multi_label_on_the_synthetic_set(prepared: Path) -> None:
    task = make_task("cls", prepared)
    assert task.multi_label and "No Finding" not in task.classes
    rows = task.rows("test")
    targets = task.targets(rows)
    assert targets.shape == (len(rows), len(task.classes))
    # "No Finding" is the empty label set; several labels are several ones.
    for labels, target in zip(rows["labels"], targets, strict=True):
        assert int(target.sum()) == len(set(labels) - {"No Finding"})
    perfect = task.metrics(targets * 20 - 10, targets)
    assert perfect["accuracy"] == 1.0 and perfect["macro_f1"] == 1.0
    assert perfect["auroc"] == 1.0 or perfect["auroc_classes"] == 0
    assert perfect["auroc_classes"] + perfect["auroc_skipped"] == len(task.classes)
    # Exact match: one wrong label makes the example wrong.
    pred = targets.bool().clone()
    pred[0, 0] = ~pred[0, 0]
    assert task.correct(pred, targets).tolist() == [False] + [True] * (len(rows) - 1)


@pytest.mark.parametrize("name", ["cls", "vqa"])
def test_a_task_rebuilt_from_its_saved_vocabulary_and_options_decodes_alike(
    name: str, prepared: Path, clip: ClipModel
) -> None:
    """What a released model keeps (classes, resolved options) is the task, less its data."""
    task = make_task(name, prepared)
    bare = TASKS[name].from_vocabulary(task.classes, **task.options)
    assert bare.options == task.options and bare.classes == task.classes
    logits = torch.randn(6, len(task.classes))
    assert bare.decode(bare.predict(logits)) == task.decode(task.predict(logits))
    model = bare.build_model(clip, **HEAD_OPTIONS[name])  # builds without data
    assert sum(p.numel() for p in model.head.parameters()) > 0
    with pytest.raises(InputError, match="no options"):
        VqaTask.from_vocabulary(["yes", "no"], multi_label=True)
    with pytest.raises(InputError, match="multi_label and normalize_features as true or false"):
        ClsTask.from_vocabulary(["Atelectasis"], multi_label="auto", normalize_features=True)


def test_cls_multi_class(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"multi_label is false but .* rows have several labels"):
        ClsTask(prepared, multi_label=False)

    def first_label(frame: pd.DataFrame) -> None:
        frame["labels"] = frame["labels"].map(lambda labels: list(labels[:1]))

    task = ClsTask(edited(prepared, tmp_path, "cls", first_label))
    assert not task.multi_label and "No Finding" in task.classes
    targets = task.targets(task.rows("test"))
    logits = torch.randn(len(targets), len(task.classes))
    assert torch.isfinite(task.loss_fn(logits, targets))
    metrics = task.metrics(logits, targets)
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert task.metrics(nn.functional.one_hot(targets, len(task.classes)).float(), targets)[
        "accuracy"
    ] == pytest.approx(1.0)


def test_vqa_counts_answers_unknown_to_the_training_vocabulary(
    prepared: Path, tmp_path: Path
) -> None:
    def novel_answer(frame: pd.DataFrame) -> None:
        first_test = frame.index[frame["split"] == "test"][0]
        frame.loc[first_test, "answer"] = "a zebra"

    task = VqaTask(edited(prepared, tmp_path, "vqa", novel_answer))
    rows = task.rows("test")
    expected = int((~rows["answer"].isin(set(task.rows("train")["answer"]))).sum())
    assert expected >= 1
    targets = task.targets(rows)
    perfect = nn.functional.one_hot(targets.clamp(min=0), len(task.classes)).float() * 10
    metrics = task.metrics(perfect, targets, rows)
    assert metrics["unknown_answers"] == expected
    assert metrics["unknown_answer_fraction"] == pytest.approx(expected / len(rows))
    assert metrics["accuracy"] == pytest.approx(1 - expected / len(rows))  # unknown = wrong
    assert torch.isfinite(task.loss_fn(perfect, targets))


def test_a_linear_probe_on_cached_features_learns(
    prepared: Path, clip: ClipModel, tmp_path: Path
) -> None:
    task = make_task("cls", prepared)
    train = task.load_split("train", clip.image_size)
    model = task.build_model(clip, head="linear")
    key = feature_key(train, model.encoder)
    z = cached_features(tmp_path, key, lambda: encode_split(model, train.images, 16))
    torch.testing.assert_close(z.norm(dim=-1), torch.full((len(z),), z.shape[1] ** 0.5))
    z = z[train.image_index]
    torch.manual_seed(0)
    head = LinearHead(z.shape[1], len(task.classes))
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.05)
    for _ in range(20):  # full batch
        optimizer.zero_grad()
        task.loss_fn(head(z), train.targets).backward()
        optimizer.step()
    accuracy = task.metrics(head.eval()(z), train.targets)["accuracy"]
    label_sets = train.rows["labels"].map(lambda labels: tuple(sorted(labels)))
    chance = label_sets.value_counts(normalize=True).iloc[0]  # always predict the commonest
    assert accuracy > chance + 0.2, (accuracy, chance)


def test_labels_missing_from_training_fail_naming_label_and_split(
    prepared: Path, tmp_path: Path
) -> None:
    for split in ("test", "val"):

        def unseen(frame: pd.DataFrame, split: str = split) -> None:
            row = frame.index[frame["split"] == split][0]
            frame.at[row, "labels"] = ["Hernia"]

        root = edited(prepared, tmp_path / split, "cls", unseen)
        with pytest.raises(DataError, match=rf"the {split} split has labels \['Hernia'\]"):
            ClsTask(root)


def test_a_vqa_set_without_closed_questions_fails(prepared: Path, tmp_path: Path) -> None:
    def all_open(frame: pd.DataFrame) -> None:
        frame["answer_type"] = "open"

    with pytest.raises(DataError, match="no closed questions"):
        VqaTask(edited(prepared, tmp_path, "vqa", all_open))


def test_feature_cache_reuses_the_stored_tensor(tmp_path: Path) -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.randn(5, 3, 4)

    first = cached_features(tmp_path / "cache", "cls-train-abc", compute)

    def must_not_run() -> torch.Tensor:
        raise AssertionError("the cache should have been used")

    second = cached_features(tmp_path / "cache", "cls-train-abc", must_not_run)
    assert torch.equal(first, second) and len(calls) == 1
    other = cached_features(tmp_path / "cache", "cls-test-abc", compute)
    assert len(calls) == 2 and not torch.equal(first, other)


@pytest.mark.parametrize("tower", ["clip", "custom_text"])
def test_question_tokens_ignore_padding_and_batch_mates(clip: ClipModel, tower: str) -> None:
    """Both open_clip layouts (inlined text tower and CustomTextCLIP's ``text``) give
    per-token features whose real tokens do not depend on padding or the batch."""
    if tower == "custom_text":
        cfg = clip.model_cfg
        model = open_clip.model.CustomTextCLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])
        clip = ClipModel(model, cfg, clip.name, clip.preprocess_cfg)
    encoder = TextTokenEncoder(clip)
    both = encoder.encode(["is there a mass?", "which organ is shown in this image of the chest?"])
    alone = encoder.encode(["is there a mass?"])
    length = int(alone.mask.sum())
    assert both.mask.dtype == torch.bool and both.mask.sum(1).tolist() == [
        length,
        both.tokens.shape[1],
    ]
    assert alone.tokens.shape == (1, length, encoder.out_dim)  # trimmed to the longest question
    torch.testing.assert_close(both.tokens[0, :length], alone.tokens[0])


def test_vqa_on_a_resnet_tower_attends_over_its_feature_map(prepared: Path) -> None:
    """A ModifiedResNet has no patch tokens: VQA attends over its last feature map's cells,
    and the image gradient an attack needs still flows."""
    clip = create_clip("medran-rn32", seed=0)
    task = make_task("vqa", prepared)
    model = task.build_model(clip, head="linear", rectifier=nn.Identity(), **HEAD_OPTIONS["vqa"])
    assert model.encoder.n_tokens == (clip.image_size // 32) ** 2
    train = task.with_context(task.load_split("train", clip.image_size), clip)
    batch = next(iter(DataLoader(train, batch_size=4, shuffle=False)))
    images = batch["images"].requires_grad_()
    loss = task.loss_fn(model.train()(images, batch["context"]), batch["targets"])
    loss.backward()
    assert torch.isfinite(loss) and images.grad.abs().sum() > 0


def test_trivial_baselines_answer_without_the_image(prepared: Path) -> None:
    cls = ClsTask(prepared)
    test = cls.rows("test")
    # The majority label set of the training split (any of them, on a tie), for every row.
    counts = Counter(frozenset(cls._labels(v)) for v in cls.train_rows["labels"])
    top = max(counts.values())
    answers = [frozenset(cls._labels(v)) for v in test["labels"]]
    assert any(
        cls.prior_correct(test).tolist() == [int(a == label_set) for a in answers]
        for label_set, count in counts.items()
        if count == top
    )
    assert 0 < cls.prior_correct(test).mean() < 1

    vqa = VqaTask(prepared)
    test = vqa.rows("test")
    # Each question's most frequent training answer; unseen questions: the overall one.
    train = vqa.train_rows.assign(answer=vqa.train_rows["answer"].str.strip().str.lower())
    by_question = train.groupby("question")["answer"].agg(lambda a: a.mode().iloc[0])
    guess = [by_question.get(q, train["answer"].mode().iloc[0]) for q in test["question"]]
    truth = test["answer"].str.strip().str.lower().tolist()
    assert vqa.prior_correct(test).tolist() == [
        int(g == t) for g, t in zip(guess, truth, strict=True)
    ]
    # Knowing the question beats knowing nothing: the per-question prior is not the majority.
    overall = train["answer"].mode().iloc[0]
    assert vqa.prior_correct(test).mean() > sum(t == overall for t in truth) / len(truth)

"""``eval_upstream@<level>``: retrieval on clean held-out pairs and zero-shot classification.

Retrieval R@1/5/10 (image->text and text->image) on the clean upstream test split,
zero-shot accuracy on the chest X-ray test split with prompt ensembling, and whether the
frozen image features carry the chest findings: a linear probe's macro AUROC on them, beside
the same probe on raw pixels. Logged as an MLflow run tagged with the pretrain run it
evaluates, and returned for the metrics JSON.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medran import layout, startup
from medran.contracts import (
    PIXEL_PROBE_AUROC,
    PROBE_AUROC,
    ZERO_SHOT_ACCURACY,
    EvalUpstreamPaths,
    read_run_id,
    stage_id,
)
from medran.data.manifest import read_manifest
from medran.data.paths import resolve_all
from medran.evaluation.probe import pixel_features, probe_auroc
from medran.evaluation.retrieval import (
    encode_images,
    encode_texts,
    recall_at_k,
    zero_shot_accuracy,
)
from medran.models.factory import ClipModel, load_local_dir
from medran.params import EvalUpstreamParams, Params
from medran.tasks import Split, make_task
from medran.tracking import stage_run
from medran.training.data import load_images


def run(params: Params, *, paths: EvalUpstreamPaths, level: float) -> dict[str, float]:
    p = params.eval_upstream
    clip = load_local_dir(paths.model)
    startup.ready()  # the model is loaded: work starts
    clip.model.eval()
    prepared = paths.data / layout.PREPARED
    upstream = read_manifest(prepared, "upstream")
    upstream = upstream[upstream["split"] == "test"]
    classes = sorted(
        {label for labels in read_manifest(prepared, "cls")["labels"] for label in labels}
    )

    tags = {"noise_level": layout.level_name(level), "upstream_run_id": read_run_id(paths.model)}
    inputs = {"prepared": prepared, "model": paths.model}
    with stage_run(stage_id("eval_upstream", level), params.experiment, p, inputs, tags) as tracker:
        files = resolve_all(prepared, upstream["image_path"], f"{prepared} upstream manifest")
        images = load_images(files, clip.image_size)
        image_features = encode_images(clip, images, p.batch_size)
        text_features = encode_texts(clip, list(upstream["caption"]), p.batch_size)
        metrics = recall_at_k(image_features @ text_features.T, p.recall_at)
        metrics["mean_recall"] = sum(metrics.values()) / len(metrics)

        chest = chest_features(clip, prepared, params.finetune.cls.multi_label, p.batch_size)
        test, test_features = chest["test"]
        metrics[ZERO_SHOT_ACCURACY] = zero_shot_accuracy(
            clip, test_features, list(test.rows["labels"]), classes, p.prompts, p.batch_size
        )
        metrics["n_retrieval_pairs"] = len(upstream)
        metrics["n_zero_shot_images"] = len(test)
        metrics |= probe_metrics(chest, p)
        tracker.log_metrics(metrics)
    return metrics


def chest_features(
    clip: ClipModel, prepared: Path, multi_label: bool | str, batch_size: int
) -> dict[str, tuple[Split, torch.Tensor]]:
    """The chest X-ray train and test splits, labels as the ``cls`` task reads them, with the
    frozen image features of each row (encoded once for zero-shot and the probe)."""
    task = make_task("cls", prepared, multi_label=multi_label)
    out = {}
    for name in ("train", "test"):
        split = task.load_split(name, clip.image_size)
        out[name] = (split, encode_images(clip, split.images, batch_size)[split.image_index])
    return out


def probe_metrics(
    chest: dict[str, tuple[Split, torch.Tensor]], p: EvalUpstreamParams
) -> dict[str, float]:
    """Probe macro AUROC on the chest X-ray test split, fitted on its train split, from the
    frozen image features and from raw pixels."""
    (train, train_z), (test, test_z) = chest["train"], chest["test"]

    def auroc(train_x: torch.Tensor, test_x: torch.Tensor) -> float:
        return probe_auroc(
            (train_x, train.targets), (test_x, test.targets), p.probe.l2, p.probe.max_iter
        )

    def pixels(split: Split) -> torch.Tensor:
        return pixel_features(split.images[split.image_index], p.probe.pixels)

    return {
        PROBE_AUROC: auroc(train_z, test_z),
        PIXEL_PROBE_AUROC: auroc(pixels(train), pixels(test)),
        "n_probe_train": float(len(train)),
        "n_probe_test": float(len(test)),
    }

"""``eval_upstream@<level>``: retrieval on clean held-out pairs and zero-shot classification.

Retrieval R@1/5/10 (image->text and text->image) on the clean upstream test split,
zero-shot accuracy on the chest X-ray test split with prompt ensembling, and whether the
frozen image features carry the chest findings: a linear probe's macro AUROC on them, beside
the same probe on raw pixels. Logged as an MLflow run tagged with the pretrain run it
evaluates, and returned for the metrics JSON.
"""

from __future__ import annotations

from pathlib import Path

from medran import layout
from medran.contracts import (
    PIXEL_PROBE_AUROC,
    PROBE_AUROC,
    ZERO_SHOT_ACCURACY,
    EvalUpstreamPaths,
    read_run_id,
    stage_id,
)
from medran.data.manifest import read_manifest
from medran.evaluation.probe import pixel_features, probe_auroc
from medran.evaluation.retrieval import (
    encode_images,
    encode_texts,
    recall_at_k,
    zero_shot_accuracy,
)
from medran.models.factory import ClipModel, load_local_dir
from medran.params import EvalUpstreamParams, Params
from medran.tasks import make_task
from medran.tracking import stage_run
from medran.training.data import load_images


def run(params: Params, *, paths: EvalUpstreamPaths, level: float) -> dict[str, float]:
    p = params.eval_upstream
    clip = load_local_dir(paths.model)
    clip.model.eval()
    prepared = paths.data / layout.PREPARED
    upstream = read_manifest(prepared, "upstream")
    upstream = upstream[upstream["split"] == "test"]
    cls = read_manifest(prepared, "cls")
    cls = cls[cls["split"] == "test"]
    classes = sorted(
        {label for labels in read_manifest(prepared, "cls")["labels"] for label in labels}
    )

    tags = {"noise_level": layout.level_name(level), "upstream_run_id": read_run_id(paths.model)}
    inputs = {"prepared": prepared, "model": paths.model}
    with stage_run(stage_id("eval_upstream", level), params.experiment, p, inputs, tags) as tracker:
        images = load_images([prepared / x for x in upstream["image_path"]], clip.image_size)
        image_features = encode_images(clip, images, p.batch_size)
        text_features = encode_texts(clip, list(upstream["caption"]), p.batch_size)
        metrics = recall_at_k(image_features @ text_features.T, p.recall_at)
        metrics["mean_recall"] = sum(metrics.values()) / len(metrics)

        cls_images = load_images([prepared / x for x in cls["image_path"]], clip.image_size)
        cls_features = encode_images(clip, cls_images, p.batch_size)
        metrics[ZERO_SHOT_ACCURACY] = zero_shot_accuracy(
            clip, cls_features, list(cls["labels"]), classes, p.prompts, p.batch_size
        )
        metrics["n_retrieval_pairs"] = len(upstream)
        metrics["n_zero_shot_images"] = len(cls)
        metrics |= probe_metrics(clip, prepared, params.finetune.cls.multi_label, p)
        tracker.log_metrics(metrics)
    return metrics


def probe_metrics(
    clip: ClipModel, prepared: Path, multi_label: bool | str, p: EvalUpstreamParams
) -> dict[str, float]:
    """Probe macro AUROC on the chest X-ray test split, fitted on its train split, from the
    frozen image features and from raw pixels; labels as the ``cls`` task reads them."""
    task = make_task("cls", prepared, multi_label=multi_label)
    inputs = {}
    for name in ("train", "test"):
        split = task.load_split(name, clip.image_size)
        images = split.images[split.image_index]
        features = encode_images(clip, images, p.batch_size)
        inputs[name] = (features, pixel_features(images, p.probe.pixels), split.targets)
    (train_z, train_px, train_y), (test_z, test_px, test_y) = inputs["train"], inputs["test"]
    return {
        PROBE_AUROC: probe_auroc(
            (train_z, train_y), (test_z, test_y), p.probe.l2, p.probe.max_iter
        ),
        PIXEL_PROBE_AUROC: probe_auroc(
            (train_px, train_y), (test_px, test_y), p.probe.l2, p.probe.max_iter
        ),
        "n_probe_train": float(len(train_y)),
        "n_probe_test": float(len(test_y)),
    }

"""``eval_upstream@<level>``: retrieval on clean held-out pairs and zero-shot classification.

Retrieval R@1/5/10 (image->text and text->image) on the clean upstream test split, and
zero-shot accuracy on the chest X-ray test split with prompt ensembling. Logged as an MLflow
run tagged with the pretrain run it evaluates, and returned for the metrics JSON.
"""

from __future__ import annotations

from medran import layout
from medran.contracts import ZERO_SHOT_ACCURACY, EvalUpstreamPaths, read_run_id, stage_id
from medran.data.manifest import read_manifest
from medran.evaluation.retrieval import (
    encode_images,
    encode_texts,
    recall_at_k,
    zero_shot_accuracy,
)
from medran.models.factory import load_local_dir
from medran.params import Params
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
        tracker.log_metrics(metrics)
    return metrics

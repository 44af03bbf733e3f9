"""``eval_upstream@<level>``: retrieval on clean held-out pairs and zero-shot classification.

Retrieval R@1/5/10 (image->text and text->image) on the clean upstream test split, and
zero-shot accuracy on the chest X-ray test split with prompt ensembling. Logged as an MLflow
run tagged with the pretrain run it evaluates, and returned for the metrics JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from medran import layout
from medran.data.manifest import read_manifest
from medran.evaluation.retrieval import (
    encode_images,
    encode_texts,
    recall_at_k,
    zero_shot_accuracy,
)
from medran.models.factory import load_local_dir
from medran.params import EvalUpstreamParams
from medran.tracking import stage_run
from medran.training.data import load_images


def run(
    params: EvalUpstreamParams, level: float, data_root: Path, model_dir: Path, experiment: str
) -> dict[str, float]:
    clip = load_local_dir(model_dir)
    clip.model.eval()
    prepared = data_root / layout.PREPARED
    upstream = read_manifest(prepared, "upstream")
    upstream = upstream[upstream["split"] == "test"]
    cls = read_manifest(prepared, "cls")
    cls = cls[cls["split"] == "test"]
    classes = sorted(
        {label for labels in read_manifest(prepared, "cls")["labels"] for label in labels}
    )

    upstream_run = json.loads((model_dir / "run.json").read_text())["run_id"]
    tags = {"noise_level": layout.level_name(level), "upstream_run_id": upstream_run}
    stage = f"eval_upstream@{layout.level_name(level)}"
    inputs = {"prepared": prepared, "model": model_dir}
    with stage_run(stage, experiment, params, inputs, tags) as tracker:
        images = load_images([prepared / p for p in upstream["image_path"]], clip.image_size)
        image_features = encode_images(clip, images, params.batch_size)
        text_features = encode_texts(clip, list(upstream["caption"]), params.batch_size)
        metrics = recall_at_k(image_features @ text_features.T, params.recall_at)
        metrics["mean_recall"] = sum(metrics.values()) / len(metrics)

        cls_images = load_images([prepared / p for p in cls["image_path"]], clip.image_size)
        cls_features = encode_images(clip, cls_images, params.batch_size)
        metrics["zero_shot_accuracy"] = zero_shot_accuracy(
            clip, cls_features, list(cls["labels"]), classes, params.prompts, params.batch_size
        )
        metrics["n_retrieval_pairs"] = len(upstream)
        metrics["n_zero_shot_images"] = len(cls)
        tracker.log_metrics(metrics)
    return metrics

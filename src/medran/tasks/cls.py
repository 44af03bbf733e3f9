"""Chest X-ray classification (Fig. 4b): pooled image features -> linear or MLP head.

Multi-class or multi-label. ``multi_label="auto"`` picks multi-label when any training row has
more than one label. In multi-label mode "No Finding" is not a class but the empty label set
(an all-zero target, the ChestX-ray14 convention), and a prediction counts as correct only on
an exact match of the thresholded (sigmoid > 0.5) label set. In multi-class mode "No Finding"
is an ordinary class and a prediction is correct when the argmax is the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from medran.data.errors import DataError
from medran.errors import InputError
from medran.evaluation.auroc import macro_auroc
from medran.models.factory import ClipModel
from medran.models.finetune import ImageFeatureEncoder, build_head
from medran.tasks.base import Task

NO_FINDING = "No Finding"


class ClsTask(Task):
    """Classification over the ``cls`` manifest; ``classes`` come from the training split."""

    name = "cls"
    kind = "labels"

    def __init__(
        self,
        prepared_root: Path,
        multi_label: bool | Literal["auto"] = "auto",
        normalize_features: bool = True,
    ):
        super().__init__(prepared_root)
        self.multi_label = self._resolve_multi_label(multi_label)
        self.normalize_features = normalize_features
        self.classes = sorted(set().union(*map(self._labels, self.train_rows["labels"])))
        if not self.classes:
            raise DataError(f"{self.path}: the training split has no labels to learn")
        self._index = {c: i for i, c in enumerate(self.classes)}
        for split in ("val", "test"):
            self._check_known(split)

    @property
    def options(self) -> dict[str, Any]:
        return {"multi_label": self.multi_label, "normalize_features": self.normalize_features}

    def configure(self, multi_label: Any = None, normalize_features: Any = True) -> None:
        if not isinstance(multi_label, bool) or not isinstance(normalize_features, bool):
            raise InputError(
                f"a saved classifier needs multi_label and normalize_features as true or false "
                f"(resolved on its data), got {multi_label!r} and {normalize_features!r}; "
                "rerun its finetune stage"
            )
        self.multi_label, self.normalize_features = multi_label, normalize_features

    def _labels(self, labels: Any) -> set[str]:
        found = set(labels)
        return found - {NO_FINDING} if self.multi_label else found

    def _resolve_multi_label(self, multi_label: bool | str) -> bool:
        if multi_label not in ("auto", True, False):
            raise InputError(f"multi_label must be 'auto', true or false, got {multi_label!r}")
        counts = self.manifest["labels"].map(len)
        if (counts == 0).any():
            example = self.manifest.loc[counts == 0, "id"].iloc[0]
            raise DataError(
                f"{self.path}: {int((counts == 0).sum())} rows have no label, e.g. {example!r}"
            )
        if multi_label == "auto":
            return bool((self.train_rows["labels"].map(len) > 1).any())
        if not multi_label and (counts > 1).any():
            example = self.manifest.loc[counts > 1, "id"].iloc[0]
            raise DataError(
                f"{self.path}: multi_label is false but {int((counts > 1).sum())} rows have "
                f"several labels, e.g. {example!r}; set multi_label to true or auto"
            )
        return bool(multi_label)

    def _check_known(self, split: str) -> None:
        seen = set().union(*map(self._labels, self.rows(split)["labels"]))
        missing = sorted(seen - set(self.classes))
        if missing:
            raise DataError(
                f"{self.path}: the {split} split has labels {missing} that the training split "
                f"lacks (training labels: {self.classes}); a classifier cannot predict them"
            )

    def targets(self, rows: pd.DataFrame) -> torch.Tensor:
        if not self.multi_label:
            return torch.tensor([self._index[labels[0]] for labels in rows["labels"]])
        hot = torch.zeros(len(rows), len(self.classes))
        for i, labels in enumerate(rows["labels"]):
            for label in self._labels(labels):
                hot[i, self._index[label]] = 1.0
        return hot

    def build_encoder(self, clip: ClipModel) -> nn.Module:
        return ImageFeatureEncoder(clip, normalize=self.normalize_features)

    def build_head(
        self, name: str, encoder: nn.Module, clip: ClipModel, **options: Any
    ) -> nn.Module:
        return build_head(name, encoder.out_dim, len(self.classes), **options)

    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
        return nn.functional.cross_entropy(logits, targets)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Class index (multi-class) or a bool label-set matrix, sigmoid > 0.5 (multi-label)."""
        return logits > 0 if self.multi_label else logits.argmax(-1)

    def correct(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per example: argmax == target, or the exact label set (multi-label)."""
        if self.multi_label:
            return (pred == targets.bool()).all(-1)
        return pred == targets

    def outcomes(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        """``correct`` plus each example's class ``scores`` (sigmoid or softmax), ``truth``
        (0/1 per class) and, multi-label, ``label_accuracy`` (the fraction of labels right)."""
        logits, targets = logits.detach().float().cpu(), targets.cpu()
        out = super().outcomes(logits, targets)
        if self.multi_label:
            out["scores"] = torch.sigmoid(logits).numpy()
            out["truth"] = targets.numpy().astype(np.uint8)
            hits = self.predict(logits) == targets.bool()
            out["label_accuracy"] = hits.float().mean(-1).numpy()
        else:
            out["scores"] = torch.softmax(logits, -1).numpy()
            out["truth"] = np.eye(len(self.classes), dtype=np.uint8)[targets.numpy()]
        return out

    def decode(self, pred: torch.Tensor) -> list[str]:
        """Predictions as label names ("A|B"; "No Finding" for an empty multi-label set)."""
        if not self.multi_label:
            return [self.classes[int(i)] for i in pred]
        return [
            "|".join(c for c, on in zip(self.classes, row, strict=True) if on) or NO_FINDING
            for row in pred.tolist()
        ]

    def metrics(
        self, logits: torch.Tensor, targets: torch.Tensor, rows: pd.DataFrame | None = None
    ) -> dict[str, float]:
        """accuracy, macro_f1, auroc (macro over classes with both values in ``targets``;
        ``auroc_skipped`` counts the others), n; multi-label adds label_accuracy."""
        logits = logits.detach().float().cpu()
        targets = targets.detach().cpu()
        pred = self.predict(logits)
        out = {"n": float(len(logits))}
        out["accuracy"] = (
            float(self.correct(pred, targets).float().mean()) if len(logits) else float("nan")
        )
        if self.multi_label:
            truth, hard = targets.numpy().astype(int), pred.numpy().astype(int)
            scores = torch.sigmoid(logits).numpy()
            active = (truth.sum(0) + hard.sum(0)) > 0  # labels absent and never predicted: no F1
            out["macro_f1"] = _f1(truth[:, active], hard[:, active])
            out["label_accuracy"] = float((truth == hard).mean()) if len(truth) else float("nan")
        else:
            truth = np.eye(len(self.classes), dtype=int)[targets.numpy()]
            scores = torch.softmax(logits, -1).numpy()
            # Macro over classes present in the targets or the predictions (sklearn's default).
            out["macro_f1"] = _f1(targets.numpy(), pred.numpy())
        out.update(macro_auroc(truth, scores))
        return out


def _f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 of class labels (N,) or indicator columns (N, C); a class with no true or
    predicted positive scores 0 (sklearn's ``zero_division=0``). Written out instead of
    importing sklearn, which costs each fine-tuning process a second of start-up."""
    if truth.size == 0:
        return float("nan")
    if truth.ndim == 1:  # labels: one column per class present in truth or predictions
        classes = np.union1d(truth, pred)
        truth, pred = truth[:, None] == classes, pred[:, None] == classes
    truth, pred = truth.astype(bool), pred.astype(bool)
    tp = (truth & pred).sum(0)
    wrong = (truth ^ pred).sum(0)
    denominator = 2 * tp + wrong
    scores = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return float(scores.mean()) if scores.size else float("nan")

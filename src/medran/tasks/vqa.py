"""Medical VQA (Fig. 4c): image tokens + question tokens -> co-attention -> answer classifier.

Answers are classes: the vocabulary is every distinct answer of the training split. A val or
test answer outside it gets target -1: it can never be predicted, so it counts as wrong, is
ignored by the loss, and is reported (``unknown_answers``, ``unknown_answer_fraction``) so a
low score can be told apart from a vocabulary gap. Accuracy is reported overall and for
closed (yes/no style) and open questions.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from torch import nn

from medran.data.errors import DataError
from medran.data.manifest import ANSWER_TYPES, SPLITS
from medran.errors import InputError
from medran.models.coattention import CoAttentionHead
from medran.models.factory import ClipModel
from medran.models.finetune import ImageTokenEncoder, TextTokenEncoder, build_head
from medran.params import CoAttentionParams
from medran.tasks.base import Split, Task

log = logging.getLogger(__name__)

UNKNOWN = -1  # target of an answer the training split never gives


def normalize_answer(answer: Any) -> str:
    return str(answer).strip().lower()


class VqaTask(Task):
    """VQA over the ``vqa`` manifest; ``classes`` is the training answer vocabulary."""

    name = "vqa"
    kind = "vqa"

    def __init__(self, prepared_root: Path):
        super().__init__(prepared_root)
        types = self.manifest["answer_type"]
        bad = sorted(set(types) - set(ANSWER_TYPES))
        if bad:
            raise DataError(
                f"{self.path}: unknown answer_type values {bad}; allowed {ANSWER_TYPES}"
            )
        if not (types == "closed").any():
            per_split = self.manifest.groupby("split").size().to_dict()
            raise DataError(
                f"{self.path}: the VQA set has no closed questions (rows per split: {per_split}); "
                "closed-question accuracy cannot be measured"
            )
        self.classes = sorted(set(self.train_rows["answer"].map(normalize_answer)))
        self._index = {a: i for i, a in enumerate(self.classes)}
        for split in SPLITS[1:]:
            unknown = int((self.targets(self.rows(split)) == UNKNOWN).sum())
            if unknown:
                log.info("vqa %s: %d answers not in the training vocabulary", split, unknown)

    def targets(self, rows: pd.DataFrame) -> torch.Tensor:
        answers = rows["answer"].map(normalize_answer)
        return torch.tensor([self._index.get(a, UNKNOWN) for a in answers], dtype=torch.long)

    def build_encoder(self, clip: ClipModel) -> nn.Module:
        return ImageTokenEncoder(clip)

    def with_context(self, split: Split, clip: ClipModel, batch_size: int = 256) -> Split:
        """Encode each distinct question once (no_grad: questions are never attacked)."""
        codes, questions = pd.factorize(split.rows["question"])
        if len(questions) == 0:
            return split
        context = TextTokenEncoder(clip).encode(list(questions), batch_size)
        index = torch.as_tensor(codes, dtype=torch.long)
        return dataclasses.replace(split, context=context, context_index=index)

    def build_head(
        self, name: str, encoder: nn.Module, clip: ClipModel, **options: Any
    ) -> nn.Module:
        """The co-attention head around classifier ``name``: ``options`` are the
        ``finetune.vqa`` params (depth, width, heads, mlp_ratio, dropout) plus
        ``classifier_options`` for the classifier."""
        text_dim = TextTokenEncoder(clip).out_dim
        classifier_options = options.pop("classifier_options", None) or {}
        try:
            settings = CoAttentionParams(**options)
        except ValidationError as e:
            raise InputError(f"bad co-attention head options {sorted(options)}: {e}") from e
        classifier = partial(build_head, name, n_out=len(self.classes), **classifier_options)
        return CoAttentionHead(encoder.out_dim, text_dim, settings, classifier)

    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known = targets != UNKNOWN
        if not bool(known.any()):  # cross_entropy's mean over no element would be NaN
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits, targets, ignore_index=UNKNOWN)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(-1)

    def correct(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per example: the predicted answer is the target (unknown answers never are)."""
        return pred == targets

    def decode(self, pred: torch.Tensor) -> list[str]:
        return [self.classes[int(i)] for i in pred]

    def prior_correct(self, test: pd.DataFrame) -> np.ndarray:
        """Question-only accuracy per ``test`` row (0/1): the most frequent training answer to
        the same question, else the most frequent answer overall."""
        train = self.train_rows.assign(answer=self.train_rows["answer"].map(normalize_answer))
        overall = train["answer"].mode().iloc[0]
        by_question = train.groupby("question")["answer"].agg(lambda a: a.mode().iloc[0])
        guess = test["question"].map(by_question).fillna(overall)
        return (guess == test["answer"].map(normalize_answer)).to_numpy().astype(np.uint8)

    def metrics(
        self, logits: torch.Tensor, targets: torch.Tensor, rows: pd.DataFrame | None = None
    ) -> dict[str, float]:
        """accuracy, closed_accuracy, open_accuracy (NaN when a type is absent), their counts,
        and unknown_answers / unknown_answer_fraction. ``rows`` gives each answer_type."""
        if rows is None or len(rows) != len(logits):
            raise InputError("VQA metrics need the split's rows (one per logit row)")
        hit = self.correct(self.predict(logits.detach().cpu()), targets.detach().cpu())
        closed = torch.tensor((rows["answer_type"] == "closed").tolist(), dtype=torch.bool)
        unknown = int((targets == UNKNOWN).sum())
        n = len(hit)
        return {
            "n": float(n),
            "accuracy": _mean(hit),
            "closed_accuracy": _mean(hit[closed]),
            "open_accuracy": _mean(hit[~closed]),
            "n_closed": float(closed.sum()),
            "n_open": float((~closed).sum()),
            "unknown_answers": float(unknown),
            "unknown_answer_fraction": unknown / n if n else float("nan"),
        }


def _mean(hit: torch.Tensor) -> float:
    return float(hit.float().mean()) if len(hit) else float("nan")

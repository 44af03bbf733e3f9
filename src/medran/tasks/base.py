"""What every downstream task shares: the ``Split`` dataset and the ``Task`` base class.

A task reads its prepared manifest once, builds its label/answer vocabulary from the training
split and checks the other splits against it before any work. A :class:`Split` keeps each
distinct image once (VQA asks several questions about one image) and maps rows to images, so
images, cached features and question contexts are stored once per distinct item.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from medran.data.errors import DataError
from medran.data.manifest import SPLITS, columns_for, manifest_path, read_table
from medran.data.paths import resolve_under
from medran.errors import InputError
from medran.models.factory import ClipModel
from medran.models.finetune import FineTuneModel, QuestionContext
from medran.training.data import load_images


@dataclasses.dataclass
class Split(Dataset):
    """One split of a task, as tensors. Items are dicts that torch's default collate batches
    into the batch the methods read (``medran.methods.base``): ``index`` (row), ``targets``,
    ``images`` (float [0, 1]) or, after :meth:`with_features`, ``z`` (encoder features); and
    ``context`` (a :class:`QuestionContext`) once a VQA task attached it. Keys are named for
    the collated batch, hence plural.
    """

    task: str
    name: str
    rows: pd.DataFrame  # the manifest rows, in item order
    images: torch.Tensor  # uint8 (M, 3, S, S), each distinct image once
    image_index: torch.Tensor  # long (N,): row -> images
    targets: torch.Tensor  # long (N,) class/answer index (-1: unknown answer) or float (N, C)
    features: torch.Tensor | None = None  # (M, ...) encoder outputs, same order as images
    context: QuestionContext | None = None  # (Q, L, D) per distinct question
    context_index: torch.Tensor | None = None  # long (N,): row -> context

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.image_index[i])
        item: dict[str, Any] = {"index": i, "targets": self.targets[i]}
        if self.features is not None:
            item["z"] = self.features[j]
        else:
            item["images"] = self.images[j].float().div(255.0)
        if self.context is not None:
            k = int(self.context_index[i])
            item["context"] = QuestionContext(self.context.tokens[k], self.context.mask[k])
        return item

    def with_features(self, features: torch.Tensor) -> Split:
        """The same split serving precomputed encoder ``features`` (one per distinct image)."""
        if len(features) != len(self.images):
            raise ValueError(f"{len(features)} feature rows for {len(self.images)} images")
        return dataclasses.replace(self, features=features)

    def fingerprint(self) -> str:
        """A digest of the rows' ids and image hashes: a cache key part for this split's data."""
        digest = hashlib.sha256(f"{self.task}/{self.name}".encode())
        for row_id, sha in zip(self.rows["id"], self.rows["sha256"], strict=True):
            digest.update(f"{row_id}:{sha};".encode())
        return digest.hexdigest()[:16]


class Task(ABC):
    """A downstream task over the prepared manifest ``role`` (``kind`` columns)."""

    name: ClassVar[str]
    kind: ClassVar[str]
    classes: list[str]  # label or answer vocabulary, from the training split

    def __init__(self, prepared_root: Path):
        self.root = Path(prepared_root)
        self.path = manifest_path(self.root, self.name)
        self.manifest = read_table(self.path, columns_for(self.kind), "prepare_data")
        bad = sorted(set(self.manifest["split"]) - set(SPLITS))
        if bad:
            raise DataError(f"{self.path}: unknown split values {bad}; allowed {list(SPLITS)}")
        self.train_rows = self.rows("train")
        if self.train_rows.empty:
            raise DataError(f"{self.path}: the {self.name} task has no training rows")

    @classmethod
    def from_vocabulary(cls, classes: Sequence[str], **options: Any) -> Self:
        """The task without its data, as a released model needs it: the ``classes`` and the
        resolved :attr:`options` saved with the model are enough to rebuild the model and
        decode its predictions. It has no manifest, so no split can be loaded from it."""
        task = cls.__new__(cls)
        task.classes = list(classes)
        task._index = {c: i for i, c in enumerate(task.classes)}
        task.configure(**options)
        return task

    @property
    def options(self) -> dict[str, Any]:
        """The class's keyword options as resolved on the data (none unless overridden)."""
        return {}

    def configure(self, **options: Any) -> None:
        """Apply resolved :attr:`options` (from a saved model) to a task built without data."""
        if options:
            raise InputError(f"the {self.name} task takes no options, got {sorted(options)}")

    def rows(self, split: str) -> pd.DataFrame:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
        return self.manifest[self.manifest["split"] == split].reset_index(drop=True)

    def load_split(self, split: str, image_size: int) -> Split:
        """Decode ``split``'s images (each distinct file once) and build its targets."""
        rows = self.rows(split)
        codes, uniques = pd.factorize(rows["image_path"])
        paths = [resolve_under(self.root, p, f"{self.path} ({split})") for p in uniques]
        return Split(
            task=self.name,
            name=split,
            rows=rows,
            images=load_images(paths, image_size),
            image_index=torch.as_tensor(codes, dtype=torch.long),
            targets=self.targets(rows),
        )

    def with_context(self, split: Split, clip: ClipModel) -> Split:
        """Attach what the head needs besides image features (nothing, unless overridden)."""
        return split

    def build_model(
        self,
        clip: ClipModel,
        head: str = "linear",
        rectifier: nn.Module | None = None,
        **head_options: Any,
    ) -> FineTuneModel:
        """The task's frozen encoder, ``rectifier`` (identity if None) and a new ``head``."""
        encoder = self.build_encoder(clip)
        return FineTuneModel(
            encoder, self.build_head(head, encoder, clip, **head_options), rectifier
        )

    def outcomes(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        """Per example: ``correct`` (0/1, for the report's confidence intervals) and the
        prediction ``pred`` (:meth:`predict`)."""
        pred = self.predict(logits.detach().cpu())
        hit = self.correct(pred, targets.cpu())
        return {"correct": hit.numpy().astype(np.uint8), "pred": pred.numpy()}

    def prior_correct(self, test: pd.DataFrame) -> np.ndarray:
        """The trivial baseline per ``test`` row (0/1): the most frequent training target,
        whatever the image (the majority rate)."""
        values, counts = self.targets(self.train_rows).unique(dim=0, return_counts=True)
        mode = values[counts.argmax()]
        targets = self.targets(test)
        return self.correct(mode.expand_as(targets), targets).numpy().astype(np.uint8)

    @abstractmethod
    def targets(self, rows: pd.DataFrame) -> torch.Tensor: ...

    @abstractmethod
    def build_encoder(self, clip: ClipModel) -> nn.Module: ...

    @abstractmethod
    def build_head(
        self, name: str, encoder: nn.Module, clip: ClipModel, **options: Any
    ) -> nn.Module: ...

    @abstractmethod
    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def predict(self, logits: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def correct(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def metrics(
        self, logits: torch.Tensor, targets: torch.Tensor, rows: pd.DataFrame | None = None
    ) -> dict[str, float]: ...

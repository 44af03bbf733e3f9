"""The contract every caption backend follows: rows in, one :class:`Rewrite` per row out.

A backend is built once by its module's ``create(params, resources)`` (which loads any model
and fails with :class:`~medran.errors.InputError` before work starts), then asked to
``rewrite`` a list of :class:`CaptionJob` in one call, so it can batch as it likes.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from medran.progress import bar


@dataclass(frozen=True)
class CaptionJob:
    """One attacked pair: the clean caption, its target, and the stored adversarial image."""

    id: str
    clean_caption: str
    target_caption: str = ""
    target_body_part: str | None = None
    adv_image_path: Path | None = None  # absolute path of the saved PNG


@dataclass(frozen=True)
class Rewrite:
    """A backend's answer for one job; ``changed_words`` are "old->new" strings."""

    caption: str
    changed_words: tuple[str, ...] = ()
    fallback: bool = False
    # Why the llm output was rejected (one of ``llm.REJECTIONS``); "" when it was not.
    reason: str = ""


@dataclass(frozen=True)
class Resources:
    """What a backend may need besides its params."""

    data_root: Path
    captioner_dir: Path | None = None
    # Clean captions the retrieval captioner chooses from (upstream train + target pool).
    caption_pool: tuple[str, ...] = field(default_factory=tuple)


class CaptionBackend(Protocol):
    name: str

    def rewrite(self, jobs: list[CaptionJob]) -> list[Rewrite]: ...


def stable_index(key: str, seed: int, n: int) -> int:
    """A seeded choice in ``range(n)`` that depends only on ``key``, not on row order."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


def word_changes(old: str, new: str) -> tuple[str, ...]:
    """Best-effort "old->new" word edits between two captions (for generated text)."""
    a, b = _WORD.findall(old), _WORD.findall(new)
    changes = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            changes.append(f"{' '.join(a[i1:i2])}->{' '.join(b[j1:j2])}")
    return tuple(changes)


def batches(jobs: list[CaptionJob], size: int, backend: str) -> Iterator[list[CaptionJob]]:
    """``jobs`` in slices of ``size``, with a progress bar."""
    for start in bar(range(0, len(jobs), size), desc=f"attack_captions {backend}", unit="batch"):
        yield jobs[start : start + size]

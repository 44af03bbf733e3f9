"""``synthesize``: write the embedded synthetic corpus in the real datasets' layouts
(docs/architecture.md, "Data").

Four datasets, each from its own seed stream: clean upstream pairs (ROCOv2 layout), the attack
target pool (MediCaT), chest X-ray classification (ChestX-ray14) and VQA (VQA-RAD). The two
downstream sets are rendered with a shifted contrast and scale. Every image gets its own
generator keyed by (seed, dataset, index), so an image does not change when a later one is
added. The corpus is assembled in a temporary sibling folder and moved into place at the end:
a crash never leaves a partial output folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from medran.contracts import SynthesizePaths
from medran.data.synthetic import attributes as vocab
from medran.data.synthetic.render import Shift, render
from medran.data.synthetic.text import caption, questions
from medran.data.synthetic.writers import (
    CaptionItem,
    ChestItem,
    FigureItem,
    VqaItem,
    write_chestxray14,
    write_medicat,
    write_rocov2,
    write_vqarad,
)
from medran.fsutil import replace_dir
from medran.params import Params, SynthesizeParams

log = logging.getLogger(__name__)

STREAMS = {"upstream": 0, "targets": 1, "cls": 2, "vqa": 3}
# Class weights of the chest set: "No Finding" a bit more common than each finding.
CLS_WEIGHTS = {name: (1.6 if name == "none" else 1.0) for name in vocab.CXR14_LABELS}
VQA_TEST_FRACTION = 0.15
CLS_TEST_FRACTION = 0.2


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """Independent generator for (seed, dataset stream, item index, ...)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _downstream_shift(p: SynthesizeParams) -> Shift:
    """The downstream sets' contrast and scale shift (upstream images have none)."""
    return Shift(contrast=p.downstream_contrast, scale=p.downstream_scale)


def _upstream(p: SynthesizeParams, tally: Counter) -> Iterator[CaptionItem]:
    stream = STREAMS["upstream"]
    order = stream_rng(p.seed, stream).permutation(p.n_upstream)
    n_train, n_valid = round(0.8 * p.n_upstream), round(0.1 * p.n_upstream)
    split_of = np.array(["test"] * p.n_upstream, dtype=object)
    split_of[order[:n_train]] = "train"
    split_of[order[n_train : n_train + n_valid]] = "valid"
    for i in range(p.n_upstream):
        rng = stream_rng(p.seed, stream, i + 1)
        attrs = _upstream_attributes(rng, p.upstream_chest_xray_fraction)
        image = render(attrs, rng, p.image_size, noise=p.pixel_noise, rgb=True)
        split = str(split_of[i])
        tally[split] += 1
        item_id = f"ROCOv2_2023_{split}_{tally[split]:06d}"
        cuis = (vocab.MODALITY_CUIS[attrs.modality], vocab.BODY_PART_CUIS[attrs.body_part])
        yield CaptionItem(item_id, split, caption(attrs, rng), cuis, image)


def _upstream_attributes(rng: np.random.Generator, chest_xray_fraction: float) -> vocab.Attributes:
    """A chest radiograph with probability ``chest_xray_fraction`` (real ROCO and MediCaT
    corpora hold many), else any body part and a modality that images it. At 0 no extra
    number is drawn, so the corpus is the one made before the fraction existed."""
    if chest_xray_fraction and rng.random() < chest_xray_fraction:
        return dataclasses.replace(
            vocab.sample_attributes(rng, body_part="chest"), modality="x-ray"
        )
    return vocab.sample_attributes(rng)


def _targets(p: SynthesizeParams, tally: Counter) -> Iterator[FigureItem]:
    stream = STREAMS["targets"]
    pool_rng = stream_rng(p.seed, stream)
    # Every body part appears: cycle through them, in a shuffled order.
    parts = [vocab.BODY_PARTS[i % len(vocab.BODY_PARTS)] for i in pool_rng.permutation(p.n_targets)]
    paper, figure, figures_left = 0, 0, 0
    for i in range(p.n_targets):
        if figures_left == 0:
            paper, figure, figures_left = paper + 1, 0, int(pool_rng.integers(1, 5))
        figure, figures_left = figure + 1, figures_left - 1
        pdf_hash = hashlib.sha1(f"medran-synthetic-{p.seed}-paper-{paper}".encode()).hexdigest()
        rng = stream_rng(p.seed, stream, i + 1)
        attrs = vocab.sample_attributes(rng, body_part=parts[i])
        image = render(attrs, rng, p.image_size, noise=p.pixel_noise, rgb=True)
        tally["papers"] = paper
        yield FigureItem(pdf_hash, f"Figure{figure}-1.png", caption(attrs, rng), image)


def _chest_findings(rng: np.random.Generator, multi_label_fraction: float) -> tuple[str, ...]:
    names = list(CLS_WEIGHTS)
    weights = np.array(list(CLS_WEIGHTS.values()))
    first = str(rng.choice(names, p=weights / weights.sum()))
    if first == "none":
        return ()
    if rng.random() < multi_label_fraction:
        second = str(rng.choice([n for n in names if n not in ("none", first)]))
        return tuple(sorted((first, second)))
    return (first,)


def _chest(p: SynthesizeParams, tally: Counter) -> Iterator[ChestItem]:
    stream = STREAMS["cls"]
    for patient in range(1, p.n_cls_patients + 1):
        rng = stream_rng(p.seed, stream, patient)
        anatomy_seed = int(rng.integers(2**31))
        age, gender = int(rng.integers(18, 90)), str(rng.choice(["M", "F"]))
        view = str(rng.choice(["PA", "AP"], p=[0.7, 0.3]))
        for followup in range(int(rng.integers(1, p.max_followups + 1))):
            image_rng = stream_rng(p.seed, stream, patient, followup + 1)
            findings = _chest_findings(image_rng, p.multi_label_fraction)
            lesions = tuple(vocab.sample_lesion(image_rng, name) for name in findings)
            attrs = vocab.Attributes("x-ray", "chest", lesions, anatomy_seed)
            image = render(
                attrs,
                image_rng,
                p.image_size,
                shift=_downstream_shift(p),
                noise=p.pixel_noise,
            )
            labels = tuple(vocab.CXR14_LABELS[name] for name in attrs.findings)
            tally["multi_label"] += len(labels) > 1
            yield ChestItem(patient, followup, labels, age + followup, gender, view, image)


def _vqa(p: SynthesizeParams, tally: Counter, test: set[int]) -> Iterator[VqaItem]:
    stream = STREAMS["vqa"]
    for i in range(p.n_vqa_images):
        rng = stream_rng(p.seed, stream, i + 1)
        attrs = vocab.sample_attributes(rng)
        image = render(
            attrs,
            rng,
            p.image_size,
            shift=_downstream_shift(p),
            noise=p.pixel_noise,
            rgb=True,
        )
        qas = tuple(questions(attrs, rng, p.questions_per_image))
        for qa in qas:
            tally[qa.answer_type.lower()] += 1
        organ = vocab.VQA_ORGANS[attrs.body_part]
        yield VqaItem(f"synpic{100001 + i}.jpg", organ, qas, i in test, image)


def _held_out(seed: int, stream: int, n: int, fraction: float) -> set[int]:
    """A seeded subset of ``range(n)`` (0-based) of about ``fraction * n`` items."""
    order = stream_rng(seed, stream, 0).permutation(n)
    return {int(i) for i in order[: max(1, round(fraction * n))]}


@contextmanager
def _timed(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    log.info("synthesize: wrote %s in %.1f s", name, time.perf_counter() - start)


def write_corpus(p: SynthesizeParams, root: Path) -> dict[str, float]:
    """Write the four datasets under ``root`` and return their counts."""
    up, targets, cls, vqa = Counter(), Counter(), Counter(), Counter()
    with _timed("rocov2"):
        n_up = write_rocov2(root / "rocov2", _upstream(p, up))
    with _timed("medicat"):
        n_targets = write_medicat(root / "medicat", _targets(p, targets))
    test_patients = {
        i + 1 for i in _held_out(p.seed, STREAMS["cls"], p.n_cls_patients, CLS_TEST_FRACTION)
    }
    with _timed("chestxray14"):
        n_cls = write_chestxray14(root / "chestxray14", _chest(p, cls), test_patients)
    test_images = _held_out(p.seed, STREAMS["vqa"], p.n_vqa_images, VQA_TEST_FRACTION)
    with _timed("vqarad"):
        n_questions = write_vqarad(root / "vqarad", _vqa(p, vqa, test_images))
    counts = {
        "n_upstream": n_up,
        "n_upstream_train": up["train"],
        "n_upstream_valid": up["valid"],
        "n_upstream_test": up["test"],
        "n_targets": n_targets,
        "n_target_papers": targets["papers"],
        "n_cls_images": n_cls,
        "n_cls_patients": p.n_cls_patients,
        "n_cls_multi_label": cls["multi_label"],
        "n_cls_test_patients": len(test_patients),
        "n_vqa_images": p.n_vqa_images,
        "n_vqa_questions": n_questions,
        "n_vqa_closed": vqa["closed"],
        "n_vqa_open": vqa["open"],
    }
    return {key: float(value) for key, value in counts.items()}


def run(params: Params, *, paths: SynthesizePaths) -> dict[str, float]:
    """Write the corpus to ``paths.out`` (replacing any old one) and return its counts."""
    start = time.perf_counter()
    with replace_dir(paths.out) as tmp:
        metrics = write_corpus(params.synthesize, tmp)
    log.info(
        "synthesize: corpus at %s in %.1f s: %s", paths.out, time.perf_counter() - start, metrics
    )
    return metrics

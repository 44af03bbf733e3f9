"""The synthetic generator: deterministic pixels, lesions where the attributes say, and text
(captions, VQA) that agrees with the attributes."""

from __future__ import annotations

import numpy as np
import pytest

from medran.data.synthetic.attributes import (
    BODY_PART_MODALITIES,
    BODY_PART_SYNONYMS,
    BODY_PARTS,
    FINDING_SYNONYMS,
    FINDINGS,
    MODALITIES,
    Attributes,
    Lesion,
    findings_for,
    sample_attributes,
)
from medran.data.synthetic.render import render
from medran.data.synthetic.text import caption, questions

SIZE = 48


def _attrs(modality: str, part: str, finding: str | None = None, side: str = "left") -> Attributes:
    lesions = () if finding is None else (Lesion(finding, side, "large"),)
    return Attributes(modality, part, lesions, anatomy_seed=7)


def test_render_is_deterministic_for_the_same_rng_state() -> None:
    attrs = _attrs("x-ray", "chest", "nodule")
    first = render(attrs, np.random.default_rng(3), SIZE)
    again = render(attrs, np.random.default_rng(3), SIZE)
    other = render(attrs, np.random.default_rng(4), SIZE)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other), "per-image jitter should change the pixels"


def test_render_shapes_and_dtype() -> None:
    attrs = _attrs("mri", "brain")
    grey = render(attrs, np.random.default_rng(0), SIZE)
    rgb = render(attrs, np.random.default_rng(0), SIZE, rgb=True)
    assert grey.shape == (SIZE, SIZE) and grey.dtype == np.uint8
    assert rgb.shape == (SIZE, SIZE, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, :, 0], grey)


@pytest.mark.parametrize(
    ("part", "modality"), [(p, m) for p, ms in BODY_PART_MODALITIES.items() for m in ms]
)
def test_every_body_part_and_modality_renders_with_every_finding(part: str, modality: str) -> None:
    for finding in (None, *findings_for(part)):
        side = "none" if finding and FINDINGS[finding].sides == ("none",) else "right"
        image = render(_attrs(modality, part, finding, side), np.random.default_rng(1), 32)
        assert image.std() > 5, f"{modality} {part} {finding}: image is nearly flat"


def test_anatomy_seed_changes_the_patient_not_the_jitter() -> None:
    a = Attributes("x-ray", "chest", (), anatomy_seed=1)
    b = Attributes("x-ray", "chest", (), anatomy_seed=2)
    assert not np.array_equal(
        render(a, np.random.default_rng(0), SIZE), render(b, np.random.default_rng(0), SIZE)
    )


@pytest.mark.parametrize(
    ("modality", "part", "finding"),
    [
        ("x-ray", "chest", "mass"),
        ("x-ray", "chest", "effusion"),
        ("x-ray", "chest", "pneumothorax"),
        ("ct", "brain", "hemorrhage"),
        ("ct", "abdomen", "cyst"),
        ("x-ray", "hand", "fracture"),
        ("x-ray", "pelvis", "fracture"),
    ],
)
@pytest.mark.parametrize("side", ["left", "right"])
def test_lesion_sits_on_the_patients_side(
    modality: str, part: str, finding: str, side: str
) -> None:
    """Radiological convention: the patient's left is the image right."""
    size = 64
    # Same rng state with and without the lesion: only the lesion differs.
    plain = render(_attrs(modality, part), np.random.default_rng(5), size, noise=0.0)
    sick = render(_attrs(modality, part, finding, side), np.random.default_rng(5), size, noise=0.0)
    diff = np.abs(sick.astype(float) - plain.astype(float))
    assert diff.sum() > 0, f"{finding} left no trace in the image"
    columns = np.arange(size) + 0.5
    centroid = float((diff.sum(axis=0) * columns).sum() / diff.sum())
    on_image_right = centroid > size / 2
    assert on_image_right == (side == "left"), (
        f"{finding} on the patient's {side} has its centroid at column {centroid:.1f} of {size}"
    )


@pytest.mark.parametrize("seed", range(40))
def test_caption_names_body_part_and_findings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    attrs = sample_attributes(rng, p_normal=0.2)
    text = caption(attrs, rng).lower()
    assert any(word in text for word in BODY_PART_SYNONYMS[attrs.body_part]), text
    for lesion in attrs.lesions:
        assert any(word in text for word in FINDING_SYNONYMS[lesion.finding]), text
        if lesion.side != "none":
            assert lesion.side in text, text


def test_normal_caption_mentions_no_finding() -> None:
    rng = np.random.default_rng(0)
    text = caption(Attributes("ct", "abdomen", (), 0), rng).lower()
    assert "abdom" in text
    assert not any(w in text for words in FINDING_SYNONYMS.values() for w in words), text


def _check_answer(attrs: Attributes, question: str, answer: str, qtype: str) -> None:
    expected = _open_answer(attrs, question)
    if expected is None:
        expected = "yes" if _closed_truth(attrs, question, qtype) else "no"
    assert answer == expected


def _open_answer(attrs: Attributes, question: str) -> str | None:
    """The answer an open question must get; None for a yes/no question."""
    if question == "What imaging modality is this?":
        return attrs.modality
    if question == "Which organ is shown?":
        return attrs.body_part
    if question == "What abnormality is seen?":
        return attrs.findings[0]
    if question == "Which side is the lesion on?":
        return attrs.lesions[0].side
    if question.startswith("How large"):
        return attrs.lesions[0].size
    return None


def _closed_truth(attrs: Attributes, question: str, qtype: str) -> bool:
    """Whether the true answer to a yes/no question is yes."""
    if question == "Is this image normal?":
        return attrs.is_normal
    if question.startswith("Is this an image of the"):
        return question.removeprefix("Is this an image of the ").rstrip("?") == attrs.body_part
    if qtype == "MODALITY":
        return next(m for m in MODALITIES if f" {m} " in question.lower()) == attrs.modality
    if qtype == "PRES":
        return next(f for f in FINDINGS if f in question) in attrs.findings
    if qtype == "POS":
        return "bilateral" in question or f"the {attrs.lesions[0].side} side" in question
    if qtype == "SIZE":
        return question.endswith(f"{attrs.lesions[0].size}?")
    pytest.fail(f"unexpected question {question!r}")


@pytest.mark.parametrize("seed", range(60))
def test_vqa_answers_agree_with_attributes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    attrs = sample_attributes(rng, body_parts=BODY_PARTS, p_normal=0.3)
    qas = questions(attrs, rng, 7)
    assert len(qas) == 7
    assert len({qa.question for qa in qas}) == 7, "questions about one image must differ"
    for qa in qas:
        assert qa.answer == qa.answer.lower().strip()
        assert qa.answer_type in ("CLOSED", "OPEN")
        if qa.answer_type == "CLOSED":
            assert qa.answer in ("yes", "no"), qa
        _check_answer(attrs, qa.question, qa.answer, qa.question_type)


def test_attributes_reject_impossible_combinations() -> None:
    with pytest.raises(ValueError, match="ultrasound"):
        Attributes("ultrasound", "hand")
    with pytest.raises(ValueError, match="fracture"):
        Attributes("x-ray", "chest", (Lesion("fracture", "left"),))
    with pytest.raises(ValueError, match="side"):
        Lesion("cardiomegaly", "left")

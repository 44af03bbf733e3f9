"""Captions and VQA question/answer pairs generated from an image's :class:`Attributes`.

Captions pick synonyms and templates at random so the text is varied, but they always name
the body part and, for abnormal images, the finding with its side and size, so the caption
attack's lexicon has words to swap. VQA answers are the canonical (first) vocabulary words,
lower case, so the answer vocabulary stays small and consistent with the attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medran.data.synthetic.attributes import (
    BODY_PART_MODIFIERS,
    BODY_PART_NOUNS,
    BODY_PARTS,
    FINDING_SYNONYMS,
    FINDINGS,
    MODALITIES,
    MODALITY_SYNONYMS,
    REGION_PHRASES,
    SIZE_SYNONYMS,
    Attributes,
    Lesion,
    findings_for,
)

VIEWS = {
    "x-ray": ("frontal", "PA"),
    "ct": ("axial",),
    "mri": ("axial", "T2-weighted"),
    "ultrasound": ("transverse",),
}
# Vocabulary words are lower case; captions write acronyms the way papers do.
ACRONYMS = {"ct": "CT", "mri": "MRI", "mr": "MR"}
NORMAL_PHRASES = ("no acute abnormality", "no abnormality", "a normal appearance")
ABNORMAL_TEMPLATES = (
    "{Modality} of the {body} showing {finding}.",
    "{Modifier} {modality}: {finding}.",
    "{View} {modality} of the {body} demonstrating {finding}.",
    "{Finding} on {modality} of the {body}.",
)
NORMAL_TEMPLATES = (
    "{Modality} of the {body} showing {finding}.",
    "{Modifier} {modality}: {finding}.",
    "{View} {modality} of the {body} with {finding}.",
)


@dataclass(frozen=True)
class QA:
    """One VQA item; ``answer_type`` is VQA-RAD's ``CLOSED``/``OPEN``."""

    question: str
    answer: str
    answer_type: str
    question_type: str


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _display(text: str) -> str:
    return " ".join(ACRONYMS.get(word, word) for word in text.split())


def _with_article(word: str) -> str:
    """ "a nodule", "an effusion"; conditions read better without one ("cardiomegaly")."""
    if word in ("cardiomegaly", "consolidation", "pneumothorax", "hemorrhage"):
        return word
    # By sound: "an x-ray", "an MRI", "an ultrasound".
    vowel_sound = word[0] in "aeiou" or word.startswith(("x-", "MR"))
    return f"an {word}" if vowel_sound else f"a {word}"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def lesion_phrase(lesion: Lesion, body_part: str, rng: np.random.Generator) -> str:
    """E.g. "a small nodule in the left lung" or "large bilateral effusions"."""
    word = _pick(rng, FINDING_SYNONYMS[lesion.finding])
    size = _pick(rng, SIZE_SYNONYMS[lesion.size]) + " " if FINDINGS[lesion.finding].sized else ""
    if lesion.side == "bilateral":
        return f"{size}bilateral {word}s"
    if lesion.side == "none":
        return f"{size}{word}"
    where = REGION_PHRASES[body_part].format(side=lesion.side)
    return f"a {size}{word} {where}"


def caption(attrs: Attributes, rng: np.random.Generator) -> str:
    """A one-sentence caption naming modality, body part and findings (or their absence)."""
    if attrs.is_normal:
        finding = _pick(rng, NORMAL_PHRASES)
        templates = NORMAL_TEMPLATES
    else:
        finding = " and ".join(lesion_phrase(x, attrs.body_part, rng) for x in attrs.lesions)
        templates = ABNORMAL_TEMPLATES
    fields = {
        "modality": _display(_pick(rng, MODALITY_SYNONYMS[attrs.modality])),
        "body": _pick(rng, BODY_PART_NOUNS[attrs.body_part]),
        "finding": finding,
        "view": _pick(rng, VIEWS[attrs.modality]),
        "modifier": _pick(rng, BODY_PART_MODIFIERS[attrs.body_part]),
    }
    fields |= {key.capitalize(): _capitalize(value) for key, value in fields.items()}
    return _pick(rng, templates).format(**fields)


def _other(rng: np.random.Generator, options: tuple[str, ...], exclude: str) -> str:
    return _pick(rng, tuple(o for o in options if o != exclude))


def _candidates(attrs: Attributes, rng: np.random.Generator) -> list[QA]:
    """Every question that can be asked about this image, answers from the attributes."""
    yes = bool(rng.random() < 0.5)
    modality = attrs.modality if yes else _other(rng, MODALITIES, attrs.modality)
    part = attrs.body_part if rng.random() < 0.5 else _other(rng, BODY_PARTS, attrs.body_part)
    possible = findings_for(attrs.body_part)
    asked = (
        str(rng.choice(attrs.findings))
        if not attrs.is_normal and rng.random() < 0.5
        else _pick(rng, possible)
    )
    items = [
        QA(
            f"Is this {_with_article(_display(modality))} image?",
            _yes(modality == attrs.modality),
            "CLOSED",
            "MODALITY",
        ),
        QA(f"Is this an image of the {part}?", _yes(part == attrs.body_part), "CLOSED", "ORGAN"),
        QA(f"Is there {_with_article(asked)}?", _yes(asked in attrs.findings), "CLOSED", "PRES"),
        QA("Is this image normal?", _yes(attrs.is_normal), "CLOSED", "ABN"),
        QA("What imaging modality is this?", attrs.modality, "OPEN", "MODALITY"),
        QA("Which organ is shown?", attrs.body_part, "OPEN", "ORGAN"),
        QA("What abnormality is seen?", attrs.findings[0], "OPEN", "ABN"),
    ]
    if attrs.lesions:
        items += _lesion_questions(attrs.lesions[0], rng)
    return items


def _lesion_questions(lesion: Lesion, rng: np.random.Generator) -> list[QA]:
    items = []
    name = lesion.finding
    if lesion.side in ("left", "right"):
        side = _pick(rng, ("left", "right"))
        answer = _yes(side == lesion.side)
        items.append(QA(f"Is the {name} on the {side} side?", answer, "CLOSED", "POS"))
        items.append(QA("Which side is the lesion on?", lesion.side, "OPEN", "POS"))
    elif lesion.side == "bilateral":
        items.append(QA(f"Is the {name} bilateral?", "yes", "CLOSED", "POS"))
        items.append(QA("Which side is the lesion on?", "bilateral", "OPEN", "POS"))
    if FINDINGS[name].sized:
        size = _pick(rng, ("small", "large"))
        items.append(QA(f"Is the {name} {size}?", _yes(size == lesion.size), "CLOSED", "SIZE"))
        items.append(QA(f"How large is the {name}?", lesion.size, "OPEN", "SIZE"))
    return items


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def questions(attrs: Attributes, rng: np.random.Generator, n: int) -> list[QA]:
    """Up to ``n`` distinct questions about one image, in a random order."""
    pool = _candidates(attrs, rng)
    order = rng.permutation(len(pool))[:n]
    return [pool[int(i)] for i in order]

"""Vocabularies of the synthetic corpus and the attributes that describe one image.

Everything the generator knows about medicine lives here: which modalities image which body
parts, which findings can occur where and on which side, the synonyms captions draw from,
and the real label names and UMLS concept ids the writers use. Captions, VQA answers,
classification labels and the rendered pixels all derive from one :class:`Attributes`, so
they agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODALITIES = ("x-ray", "ct", "mri", "ultrasound")
BODY_PARTS = ("chest", "brain", "abdomen", "knee", "hand", "pelvis")
SIZES = ("small", "large")

# Which modalities plausibly image which body part (first one is the most common).
BODY_PART_MODALITIES: dict[str, tuple[str, ...]] = {
    "chest": ("x-ray", "ct"),
    "brain": ("ct", "mri"),
    "abdomen": ("ct", "ultrasound", "mri"),
    "knee": ("x-ray", "mri"),
    "hand": ("x-ray",),
    "pelvis": ("x-ray", "ct"),
}


@dataclass(frozen=True)
class FindingRule:
    """Where a finding can occur, on which sides, and whether it has a size."""

    body_parts: tuple[str, ...]
    sides: tuple[str, ...]  # left, right, bilateral, or none (no laterality: an enlarged heart)
    sized: bool = True


FINDINGS: dict[str, FindingRule] = {
    "nodule": FindingRule(("chest",), ("left", "right")),
    "mass": FindingRule(("chest", "brain", "abdomen"), ("left", "right")),
    "consolidation": FindingRule(("chest",), ("left", "right")),
    "effusion": FindingRule(("chest",), ("left", "right", "bilateral")),
    "pneumothorax": FindingRule(("chest",), ("left", "right")),
    "cardiomegaly": FindingRule(("chest",), ("none",), sized=False),
    "hemorrhage": FindingRule(("brain",), ("left", "right")),
    "cyst": FindingRule(("abdomen",), ("left", "right")),
    "fracture": FindingRule(("knee", "hand", "pelvis"), ("left", "right")),
}
NO_FINDING = "none"

# Synonyms for captions. The first entry is the canonical word (also the VQA answer).
MODALITY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "x-ray": ("x-ray", "radiograph", "plain film", "plain radiograph"),
    "ct": ("ct", "computed tomography", "ct scan"),
    "mri": ("mri", "magnetic resonance imaging", "mr image"),
    "ultrasound": ("ultrasound", "sonography", "ultrasonography", "sonogram"),
}
BODY_PART_SYNONYMS: dict[str, tuple[str, ...]] = {
    "chest": ("chest", "thorax", "thoracic"),
    "brain": ("brain", "head", "cranial"),
    "abdomen": ("abdomen", "abdominal", "belly"),
    "knee": ("knee", "knee joint"),
    "hand": ("hand", "wrist and hand"),
    "pelvis": ("pelvis", "pelvic", "hip"),
}
# Nouns usable after "of the" and modifiers usable before a modality word.
BODY_PART_NOUNS: dict[str, tuple[str, ...]] = {
    "chest": ("chest", "thorax"),
    "brain": ("brain", "head"),
    "abdomen": ("abdomen",),
    "knee": ("knee", "knee joint"),
    "hand": ("hand",),
    "pelvis": ("pelvis",),
}
BODY_PART_MODIFIERS: dict[str, tuple[str, ...]] = {
    "chest": ("chest", "thoracic"),
    "brain": ("brain", "head", "cranial"),
    "abdomen": ("abdominal",),
    "knee": ("knee",),
    "hand": ("hand",),
    "pelvis": ("pelvic", "hip"),
}
FINDING_SYNONYMS: dict[str, tuple[str, ...]] = {
    "nodule": ("nodule", "pulmonary nodule"),
    "mass": ("mass", "tumour", "space-occupying lesion"),
    "consolidation": ("consolidation", "opacity", "airspace opacity"),
    "effusion": ("effusion", "pleural effusion"),
    "pneumothorax": ("pneumothorax",),
    "cardiomegaly": ("cardiomegaly", "enlarged cardiac silhouette"),
    "hemorrhage": ("hemorrhage", "haemorrhage", "bleed"),
    "cyst": ("cyst", "cystic lesion"),
    "fracture": ("fracture", "break"),
}
SIZE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "small": ("small", "tiny", "subtle"),
    "large": ("large", "big", "extensive"),
}
# Where a sided finding sits, per body part ("{side}" is filled with left/right).
REGION_PHRASES: dict[str, str] = {
    "chest": "in the {side} lung",
    "brain": "in the {side} hemisphere",
    "abdomen": "in the {side} side of the abdomen",
    "knee": "on the {side} side of the joint",
    "hand": "of a {side}-sided finger",
    "pelvis": "of the {side} femoral neck",
}

# VQA-RAD's organ field uses upper-case short names.
VQA_ORGANS = {
    "chest": "CHEST",
    "brain": "HEAD",
    "abdomen": "ABD",
    "knee": "KNEE",
    "hand": "HAND",
    "pelvis": "PELVIS",
}
# ChestX-ray14's real label names for the chest findings the renderer draws distinguishably.
CXR14_LABELS: dict[str, str] = {
    "none": "No Finding",
    "nodule": "Nodule",
    "mass": "Mass",
    "effusion": "Effusion",
    "consolidation": "Consolidation",
    "cardiomegaly": "Cardiomegaly",
    "pneumothorax": "Pneumothorax",
}
# Real UMLS concept ids, as ROCOv2's concept files carry them.
MODALITY_CUIS = {
    "x-ray": "C1306645",  # Plain x-ray
    "ct": "C0040405",  # X-Ray Computed Tomography
    "mri": "C0024485",  # Magnetic Resonance Imaging
    "ultrasound": "C0041618",  # Ultrasonography
}
BODY_PART_CUIS = {
    "chest": "C0817096",  # Chest
    "brain": "C0006104",  # Brain
    "abdomen": "C0000726",  # Abdomen
    "knee": "C0022742",  # Knee
    "hand": "C0018563",  # Hand
    "pelvis": "C0030797",  # Pelvis
}


@dataclass(frozen=True)
class Lesion:
    """One finding in one image: what, on which (patient) side, how big."""

    finding: str
    side: str = "none"
    size: str = "small"

    def __post_init__(self) -> None:
        rule = FINDINGS.get(self.finding)
        if rule is None:
            raise ValueError(f"unknown finding {self.finding!r}; allowed: {sorted(FINDINGS)}")
        if self.side not in rule.sides:
            raise ValueError(f"finding {self.finding!r} cannot have side {self.side!r}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; allowed: {list(SIZES)}")


@dataclass(frozen=True)
class Attributes:
    """Everything that determines one synthetic image and the text about it.

    ``anatomy_seed`` fixes the patient's anatomy, so follow-up images of one patient share
    it and look alike while per-image jitter still differs.
    """

    modality: str
    body_part: str
    lesions: tuple[Lesion, ...] = ()
    anatomy_seed: int = 0

    def __post_init__(self) -> None:
        if self.body_part not in BODY_PART_MODALITIES:
            raise ValueError(f"unknown body part {self.body_part!r}; allowed: {BODY_PARTS}")
        if self.modality not in BODY_PART_MODALITIES[self.body_part]:
            allowed = BODY_PART_MODALITIES[self.body_part]
            raise ValueError(f"{self.body_part} is not imaged by {self.modality!r}: {allowed}")
        for lesion in self.lesions:
            if self.body_part not in FINDINGS[lesion.finding].body_parts:
                raise ValueError(f"{lesion.finding!r} cannot occur in the {self.body_part}")

    @property
    def findings(self) -> tuple[str, ...]:
        return tuple(lesion.finding for lesion in self.lesions) or (NO_FINDING,)

    @property
    def is_normal(self) -> bool:
        return not self.lesions


def findings_for(body_part: str) -> tuple[str, ...]:
    """The findings that can occur in ``body_part``, in a fixed order."""
    return tuple(name for name, rule in FINDINGS.items() if body_part in rule.body_parts)


def sample_lesion(rng: np.random.Generator, finding: str) -> Lesion:
    rule = FINDINGS[finding]
    side = str(rng.choice(rule.sides))
    size = str(rng.choice(SIZES)) if rule.sized else "large"
    return Lesion(finding, side, size)


def sample_attributes(
    rng: np.random.Generator,
    body_parts: tuple[str, ...] = BODY_PARTS,
    p_normal: float = 0.3,
    body_part: str | None = None,
) -> Attributes:
    """Draw a random image description: body part, a fitting modality, 0 or 1 lesion."""
    part = body_part or str(rng.choice(body_parts))
    modality = str(rng.choice(BODY_PART_MODALITIES[part]))
    lesions: tuple[Lesion, ...] = ()
    if rng.random() >= p_normal:
        lesions = (sample_lesion(rng, str(rng.choice(findings_for(part)))),)
    return Attributes(modality, part, lesions, anatomy_seed=int(rng.integers(2**31)))

"""The medical lexicon, the ``rules`` caption attack and the backend registry (no models)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from medran.attacks.captions import BACKENDS, get_backend
from medran.attacks.captions.base import word_changes
from medran.attacks.captions.hf import resolve_model
from medran.attacks.captions.llm import build_prompt, clean_output, rejection
from medran.attacks.captions.rules import choose_body_part, rewrite_caption
from medran.attacks.lexicon import (
    BODY_PARTS,
    LEXICON,
    body_part_of,
    match_case,
    opposite_of,
)
from medran.data.synthetic import attributes as vocab
from medran.data.synthetic.text import caption
from medran.errors import InputError
from medran.params import AttackCaptionsParams
from tests.helpers import section

CAPTIONS = section("attack_captions").model_dump()


def synthetic_captions(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        attrs = vocab.sample_attributes(rng)
        out.append((caption(attrs, rng), attrs.body_part))
    return out


def test_lexicon_covers_the_synthetic_vocabulary() -> None:
    assert list(BODY_PARTS) == sorted(BODY_PARTS)
    assert set(vocab.BODY_PARTS) <= set(BODY_PARTS)
    for part, words in vocab.BODY_PART_SYNONYMS.items():
        assert all(body_part_of(w) == part for w in words), part


def test_every_term_names_its_own_body_part() -> None:
    for part, entry in LEXICON.items():
        for words in entry.terms.values():
            for word in words:
                assert body_part_of(f"CT of the {word.upper()}.") == part, word


def test_body_part_of_synthetic_captions() -> None:
    for text, part in synthetic_captions(400):
        assert body_part_of(text) == part, text


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("Chest X-ray showing bilateral pulmonary infiltrates.", "chest"),
        (
            "Axial contrast-enhanced CT of the abdomen showing a hypodense hepatic lesion.",
            "abdomen",
        ),
        ("Sagittal T2-weighted MRI of the lumbar spine showing L4-L5 disc herniation.", "spine"),
        ("Axial CT of the thoracic spine: fracture of the T12 vertebral body.", "spine"),
        ("Non-contrast CT head showing an acute subdural haematoma.", "brain"),
        ("FLAIR MRI showing periventricular white matter lesions in both hemispheres.", "brain"),
        ("Anteroposterior radiograph of the right knee showing a tibial plateau fracture.", "knee"),
        ("Plain radiograph of the left hand: fracture of the fifth metacarpal bone.", "hand"),
        ("Pelvic X-ray showing a displaced fracture of the left femoral neck.", "pelvis"),
        ("Ultrasound of the neck showing a nodule in the right thyroid lobe.", "neck"),
        ("Lateral radiograph of the ankle showing a calcaneal spur.", "foot"),
        ("MRI of the right shoulder showing a full-thickness rotator cuff tear.", "shoulder"),
        ("Renal ultrasound showing hydronephrosis of the left kidney.", "abdomen"),
        ("Echocardiography showing a dilated left ventricle.", None),
        ("Histopathology slide, H&E stain, x400.", None),
    ],
)
def test_body_part_of_realistic_captions(text: str, part: str | None) -> None:
    assert body_part_of(text) == part


def test_body_part_ties_go_to_the_first_mention() -> None:
    assert body_part_of("CT of the head and neck") == "brain"
    assert body_part_of("CT of the neck and head") == "neck"
    assert body_part_of("Lung and liver: CT of the abdomen") == "abdomen"  # 2 abdomen terms
    assert body_part_of(None) is None and body_part_of("") is None


def test_opposites_keep_case() -> None:
    assert [opposite_of(w) for w in ("left", "Left", "LEFT", "Normal", "no", "small")] == [
        "right",
        "Right",
        "RIGHT",
        "Abnormal",
        "some",
        "large",
    ]
    assert opposite_of("caption") is None
    assert match_case("chest", "Abdomen") == "Chest"


def test_rules_swap_to_the_target_body_part_and_flip_opposites() -> None:
    out = rewrite_caption("Chest X-ray showing a small nodule in the left lung.", "abdomen")
    assert out.caption == "Abdomen X-ray showing a large nodule in the right kidney."
    assert out.changed_words == ("Chest->Abdomen", "small->large", "left->right", "lung->kidney")
    assert not out.fallback


def test_rules_keep_grammar_and_case() -> None:
    out = rewrite_caption("An abdominal CT: no acute abnormality. LEFT-sided view.", "chest")
    assert out.caption == "A thoracic CT: some chronic abnormality. RIGHT-sided view."
    # "with" flips only when no stronger opposite is there (no double negatives).
    out = rewrite_caption("X-ray of the chest with a normal appearance.", "brain")
    assert out.caption == "X-ray of the brain with an abnormal appearance."
    assert rewrite_caption("MRI of the brain with contrast.", "knee").caption == (
        "MRI of the knee without contrast."
    )


def test_rules_read_multi_word_terms_whole() -> None:
    out = rewrite_caption("MRI of the thoracic spine showing a lower disc bulge.", "chest")
    assert out.caption == "MRI of the chest showing an upper disc bulge."
    assert out.changed_words == ("thoracic spine->chest", "lower->upper")


def test_rules_are_deterministic_and_seeded_without_target() -> None:
    text = "CT of the brain showing a small haemorrhage."
    first = rewrite_caption(text, None, key="row-1", seed=0)
    assert first == rewrite_caption(text, None, key="row-1", seed=0)
    assert body_part_of(first.caption) not in (None, "brain")
    # The same body part as the caption's own is no swap: another part is chosen.
    assert body_part_of(rewrite_caption(text, "brain", key="row-1").caption) != "brain"
    chosen = {choose_body_part("brain", None, f"row-{i}", seed=3) for i in range(40)}
    assert len(chosen) > 3 and "brain" not in chosen


def test_rules_leave_captions_without_lexicon_words_unchanged() -> None:
    out = rewrite_caption("Histopathology slide, H&E stain.", "chest")
    assert out.caption == "Histopathology slide, H&E stain." and out.changed_words == ()


def test_rules_change_every_synthetic_caption_to_the_target() -> None:
    rng = np.random.default_rng(1)
    for i, (text, part) in enumerate(synthetic_captions(300, seed=2)):
        target = str(rng.choice([p for p in vocab.BODY_PARTS if p != part]))
        out = rewrite_caption(text, target, key=str(i))
        assert out.caption != text and out.changed_words
        assert body_part_of(out.caption) == target, (text, out.caption)


def test_unknown_backend_lists_the_registry() -> None:
    assert sorted(BACKENDS) == ["captioner", "llm", "rules"]
    with pytest.raises(InputError, match=r"'nope'.*\['captioner', 'llm', 'rules'\]"):
        get_backend("nope")
    with pytest.raises(ValidationError, match="backend"):
        AttackCaptionsParams.model_validate(CAPTIONS | {"backend": "nope"})
    with pytest.raises(ValidationError, match=r"llm\.model"):
        AttackCaptionsParams.model_validate(CAPTIONS | {"backend": "llm"})


def test_llm_output_checks() -> None:
    clean = "CT of the chest showing a small nodule."
    assert clean_output('  Rewritten caption: "CT of the knee."\nmore text') == "CT of the knee."
    assert rejection("", clean, 2.0) == "empty"
    assert rejection("ct of the  CHEST showing a small nodule.", clean, 2.0) == "unchanged"
    assert rejection(clean * 3, clean, 2.0) == "too_long"
    assert rejection("Rewrite the following radiology image caption", clean, 9.0) == (
        "echoes_prompt"
    )
    assert rejection("CT of the knee showing a large nodule.", clean, 2.0) == ""
    assert "knee" in build_prompt(clean, "knee", chat_template=False)
    assert build_prompt(clean, "knee", chat_template=True)[0]["role"] == "user"


def test_word_changes_lists_edits() -> None:
    assert word_changes("CT of the left lung.", "CT of the right liver.") == (
        "left lung->right liver",
    )
    assert word_changes("a b", "a b") == ()


def test_missing_model_folder_is_named(tmp_path) -> None:
    with pytest.raises(InputError, match=r"attack_captions\.llm\.model.*does not exist"):
        resolve_model(str(tmp_path / "nowhere"), "attack_captions.llm.model")
    assert resolve_model("org/model", "k") == "org/model"  # a hub id is tried as such
    assert resolve_model(str(tmp_path), "k") == str(tmp_path.resolve())

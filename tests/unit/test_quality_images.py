"""Per-image facts and L-inf distances are read from the files, including broken ones."""

from __future__ import annotations

import hashlib
import math

import numpy as np
from PIL import Image

from medran.quality.images import FACT_COLUMNS, image_facts, linf_distance


def _png(path, value=10, size=(8, 8), mode="RGB"):
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path)
    return path


def test_facts_of_good_broken_missing_and_refused_files(tmp_path):
    good = _png(tmp_path / "good.png", value=7, size=(8, 6))
    gray = _png(tmp_path / "gray.png", mode="L")
    broken = _png(tmp_path / "broken.png")
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])

    facts = image_facts([good, gray, broken, tmp_path / "missing.png", None])

    assert list(facts.columns) == [*FACT_COLUMNS, "error"]
    assert facts["exists"].tolist() == [True, True, True, False, False]
    assert facts["decodes"].tolist() == [True, True, False, False, False]
    first = facts.iloc[0]
    assert (first["width"], first["height"], first["mode"]) == (8, 6, "RGB")
    assert (first["min_pixel"], first["max_pixel"]) == (7, 7)
    assert first["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert facts.loc[1, "mode"] == "L"
    # A truncated file still hashes (it exists) but has no size; the error says why.
    assert facts.loc[2, "sha256"] == hashlib.sha256(broken.read_bytes()).hexdigest()
    assert facts["width"].isna().tolist() == [False, False, True, True, True]
    assert facts.loc[2, "error"].startswith("cannot decode")
    assert facts.loc[3, "error"].startswith("cannot read")


def test_facts_without_pixels_and_empty_input(tmp_path):
    facts = image_facts([_png(tmp_path / "a.png")], pixels=False, workers=1)
    assert facts["min_pixel"].isna().all()
    assert image_facts([]).empty


def test_linf_distance_in_unit_pixels(tmp_path):
    a = _png(tmp_path / "a.png", value=100)
    b = _png(tmp_path / "b.png", value=104)
    small = _png(tmp_path / "small.png", size=(4, 4))
    distances = linf_distance([a, a, a, a], [a, b, small, tmp_path / "missing.png"])
    assert distances[0] == 0.0
    assert math.isclose(distances[1], 4 / 255)
    assert math.isnan(distances[2]) and math.isnan(distances[3])

"""The adversarial and noisy gates pass a valid data root and name the rows of a broken one.

A small real data root is built once: ``synthesize`` + ``prepare_data``, then adversarial PNGs
written here (clean image + random noise within eps, lossless uint8) with manifests in the exact
attack and noisy schemas, following the attack order of ``attacks.selection``. Each test breaks
a copy of it in one way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medran import layout
from medran.attacks.lexicon import body_part_of
from medran.attacks.selection import attack_order, n_replaced
from medran.data.errors import DataError
from medran.data.manifest import (
    ADV_CAPTION_COLUMNS,
    ADV_IMAGE_COLUMNS,
    NOISY_COLUMNS,
    read_manifest,
)
from medran.params import Params
from medran.quality.gx import QualityGateError
from tests.helpers import project_params
from tests.integration.conftest import SOURCES, make_data_root, run_gate

SMALL = {
    "n_upstream": 40,
    "n_targets": 20,
    "n_cls_patients": 20,
    "max_followups": 2,
    "n_vqa_images": 15,
}
LEVELS = [0.0, 0.1, 0.3]
EPS = 8
IMAGES = layout.ATTACK_IMAGES / "manifest.parquet"
CAPTIONS = layout.ATTACK_CAPTIONS / "manifest.parquet"


def gate_params(**validate_data: object) -> Params:
    # 32 training pairs: round(0.3 * 32) / 32 = 0.3125, so the level tolerance must exceed 1/64.
    return project_params(
        noise_levels=LEVELS,
        prepare_data={"image_size": 32, "sources": SOURCES},
        attack_images={"eps": EPS, "max_fraction": max(LEVELS)},
        validate_data={"min_rows": 2, "level_tolerance": 0.02, **validate_data},
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _save(root: Path, relative: str, pixels: np.ndarray) -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return _sha(path)


def _pick_target(part: str | None, targets: pd.DataFrame, i: int) -> pd.Series:
    """The i-th target in rotation whose body part differs (the default pairing rule)."""
    for j in range(len(targets)):
        row = targets.iloc[(i + j) % len(targets)]
        if body_part_of(row["caption"]) != part:
            return row
    raise AssertionError("no target with another body part")


def write_attacks(root: Path, order: list[str]) -> None:
    """Attack manifests for the prefix of ``order`` the largest level needs; 3 of 4 succeed."""
    upstream = read_manifest(root / "prepared", "upstream").set_index("id")
    targets = read_manifest(root / "prepared", "targets")
    rng = np.random.default_rng(0)
    images, captions = [], []
    for rank, id_ in enumerate(order[: n_replaced(max(LEVELS), len(order))]):
        clean_path = f"prepared/{upstream.at[id_, 'image_path']}"
        clean = _pixels(root / clean_path)
        adv = np.clip(clean + rng.integers(-EPS, EPS + 1, size=clean.shape), 0, 255)
        adv_path = f"attacks/images/png/{id_}.png"
        sha = _save(root, adv_path, adv)
        caption = upstream.at[id_, "caption"]
        part = body_part_of(caption)
        target = _pick_target(part, targets, rank)
        target_part = body_part_of(target["caption"])
        images.append({"id": id_, "rank": rank, "adv_image_path": adv_path,
                       "clean_image_path": clean_path, "target_id": target["id"],
                       "target_image_path": f"prepared/{target['image_path']}",
                       "clean_body_part": part, "target_body_part": target_part,
                       "eps": EPS, "step_size": 1.0, "steps": 10,
                       "linf": int(np.abs(adv - clean).max()), "l2": 1.0, "psnr": 40.0,
                       "cos_target": 0.5, "cos_clean": 0.4, "cos_clean_target": 0.1,
                       "success": rank % 4 != 3, "adv_sha256": sha})  # fmt: skip
        # A body-part swap to the target's part: here simply the target's caption.
        captions.append({"id": id_, "clean_caption": caption, "target_caption": target["caption"],
                         "adv_caption": target["caption"], "backend": "rules", "changed": True,
                         "changed_words": [f"{part}->{target_part}"],
                         "fallback": False})  # fmt: skip
    for relative, rows, columns in ((IMAGES, images, ADV_IMAGE_COLUMNS),
                                    (CAPTIONS, captions, ADV_CAPTION_COLUMNS)):  # fmt: skip
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=list(columns)).to_parquet(root / relative, index=False)


def write_noisy(root: Path, order: list[str]) -> None:
    """One manifest per level: the first round(p * n_train) ids of ``order`` are adversarial."""
    upstream = read_manifest(root / "prepared", "upstream")
    attacks = pd.read_parquet(root / IMAGES).set_index("id")
    captions = pd.read_parquet(root / CAPTIONS).set_index("id")
    for level in LEVELS:
        replaced = set(order[: n_replaced(level, len(order))])
        frame = upstream.copy()
        adv = frame["id"].isin(replaced)
        frame["clean_image_path"] = "prepared/" + frame["image_path"]
        frame["image_path"] = frame["clean_image_path"].where(
            ~adv, frame["id"].map(attacks["adv_image_path"])
        )
        frame["sha256"] = frame["sha256"].where(~adv, frame["id"].map(attacks["adv_sha256"]))
        frame["caption"] = frame["caption"].where(~adv, frame["id"].map(captions["adv_caption"]))
        frame["is_adversarial"] = adv
        frame["target_id"] = frame["id"].map(attacks["target_id"]).where(adv, None)
        frame["caption_kind"] = np.where(adv, "rewrite", "clean")
        frame["noise_level"] = level
        path = root / layout.noisy_dir(level) / "manifest.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.loc[:, list(NOISY_COLUMNS)].to_parquet(path, index=False)


@pytest.fixture(scope="module")
def valid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_data_root(tmp_path_factory.mktemp("project") / "data", SMALL, image_size=32)
    upstream = read_manifest(root / "prepared", "upstream")
    order = attack_order(upstream.loc[upstream["split"] == "train", "id"], seed=0)
    write_attacks(root, order)
    write_noisy(root, order)
    return root


@pytest.fixture
def work_root(valid_root: Path, tmp_path: Path) -> Path:
    """A copy of the valid data root that one test may break."""
    return Path(shutil.copytree(valid_root, tmp_path / "data"))


def _order(root: Path) -> list[str]:
    return pd.read_parquet(root / IMAGES).sort_values("rank")["id"].tolist()


def _edit(root: Path, relative: Path | str, row_id: str, **values: Any) -> None:
    path = root / relative
    frame = pd.read_parquet(path)
    (index,) = frame.index[frame["id"] == row_id]
    for column, value in values.items():
        frame.at[index, column] = value
    frame.to_parquet(path, index=False)


@pytest.mark.parametrize("suite", ["adversarial", "noisy@0.0", "noisy@0.3", "nesting"])
def test_valid_data_root_passes(work_root: Path, tmp_path: Path, suite: str) -> None:
    out = tmp_path / "report"
    metrics = run_gate(suite, work_root, out, gate_params())
    result = json.loads((out / "result.json").read_text())
    assert result["success"] is True and result["n_failed"] == 0, result["failures"]
    assert metrics["success"] is True and (out / "docs" / "index.html").is_file()
    if suite == "adversarial":
        observed = result["roles"]["attack_images"]["observed"]
        n = len(_order(work_root))
        assert observed["column_mean(success)"] == pytest.approx(np.mean(np.arange(n) % 4 != 3))
        assert result["roles"]["attack_captions"]["observed"]["column_sum(fallback)"] == 0
    elif suite == "noisy@0.3":
        assert set(result["roles"]) == {"noisy_0.3"}  # one level's gate reads that level only
        observed = result["roles"]["noisy_0.3"]["observed"]
        assert observed["column_sum(adversarial_train)"] == len(_order(work_root))
    else:
        assert set(result["roles"]) == {"noisy_0.0"} if suite == "noisy@0.0" else {"nesting"}


def _amplify(root: Path) -> str:
    """Save one adversarial image at 3x its perturbation (beyond eps); keep its hash honest."""
    row = pd.read_parquet(root / IMAGES).iloc[0]
    clean, adv = _pixels(root / row["clean_image_path"]), _pixels(root / row["adv_image_path"])
    sha = _save(root, row["adv_image_path"], clean + 3 * np.sign(adv - clean) * EPS)
    _edit(root, IMAGES, row["id"], adv_sha256=sha)
    return row["id"]


def _missing_clean(root: Path) -> str:
    _edit(root, IMAGES, _order(root)[1], id="upstream-not-prepared")
    return "upstream-not-prepared"


def _duplicate(root: Path) -> str:
    frame = pd.read_parquet(root / IMAGES)
    pd.concat([frame, frame.iloc[[2]]]).to_parquet(root / IMAGES, index=False)
    return frame.iloc[2]["id"]


def _low_success(root: Path) -> str:
    frame = pd.read_parquet(root / IMAGES)
    frame["success"] = frame["rank"] == 0
    frame.to_parquet(root / IMAGES, index=False)
    return f"observed {1 / len(frame)!r}"  # a rate names no row: the observed rate instead


def _empty_caption(root: Path) -> str:
    id_ = _order(root)[3]
    _edit(root, CAPTIONS, id_, adv_caption="  ")
    return id_


def _unchanged_caption(root: Path) -> str:
    frame = pd.read_parquet(root / CAPTIONS)
    row = frame[frame["clean_caption"].map(body_part_of).notna()].iloc[0]
    _edit(root, CAPTIONS, row["id"], adv_caption=row["clean_caption"], changed=False)
    _edit(root, CAPTIONS, row["id"], changed_words=np.array([], dtype=object))
    return row["id"]


def _flip_flag(root: Path) -> str:
    upstream = read_manifest(root / "prepared", "upstream")
    train = set(upstream.loc[upstream["split"] == "train", "id"])
    id_ = sorted(train - set(_order(root)))[0]  # a training id no level replaces
    _edit(root, layout.noisy_dir(0.1) / "manifest.parquet", id_, is_adversarial=True)
    return id_


def _val_adversarial(root: Path) -> str:
    upstream = read_manifest(root / "prepared", "upstream")
    id_ = upstream.loc[upstream["split"] == "val", "id"].iloc[0]
    _edit(root, layout.noisy_dir(0.3) / "manifest.parquet", id_, is_adversarial=True)
    return id_


def _broken_nesting(root: Path) -> str:
    """Make an id that is adversarial at 0.1 fully clean (and consistent) at 0.3."""
    id_ = _order(root)[0]
    upstream = read_manifest(root / "prepared", "upstream").set_index("id")
    _edit(root, layout.noisy_dir(0.3) / "manifest.parquet", id_, is_adversarial=False,
          image_path=f"prepared/{upstream.at[id_, 'image_path']}",
          sha256=upstream.at[id_, "sha256"], caption=upstream.at[id_, "caption"],
          target_id=None, caption_kind="clean")  # fmt: skip
    return id_


IN_SET = "expect_column_values_to_be_in_set"
# case -> (suite, how to break the valid root (returns the row id to name), the failure line)
BROKEN = {
    "image beyond eps": (
        "adversarial",
        _amplify,
        "attack_images: expect_column_values_to_be_between(linf_measured)",
    ),
    "clean id missing": (
        "adversarial",
        _missing_clean,
        f"attack_images: {IN_SET}(clean_in_upstream)",
    ),
    "duplicated id": (
        "adversarial",
        _duplicate,
        "attack_images: expect_column_values_to_be_unique(id)",
    ),
    "success below floor": (
        "adversarial",
        _low_success,
        "attack_images: expect_column_mean_to_be_between(success)",
    ),
    "empty caption": (
        "adversarial",
        _empty_caption,
        "attack_captions: expect_column_values_to_be_between(adv_caption_chars)",
    ),
    "unchanged caption": (
        "adversarial",
        _unchanged_caption,
        f"attack_captions: {IN_SET}(unchanged_but_required)",
    ),
    "flag flipped": ("noisy@0.1", _flip_flag, f"noisy_0.1: {IN_SET}(flag_matches_order)"),
    "val row adversarial": (
        "noisy@0.3",
        _val_adversarial,
        f"noisy_0.3: {IN_SET}(adversarial_outside_train)",
    ),
    "nesting broken": ("nesting", _broken_nesting, f"nesting: {IN_SET}(missing_at_larger_levels)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_data_root_fails_naming_the_row(work_root: Path, tmp_path: Path, case: str) -> None:
    suite, mutate, line = BROKEN[case]
    named = mutate(work_root)
    out = tmp_path / "report"
    with pytest.raises(QualityGateError) as error:
        run_gate(suite, work_root, out, gate_params())
    lines = [x.strip() for x in str(error.value).splitlines()]
    matching = [x for x in lines if x.startswith(line) and named in x]
    assert matching, f"no failure line {line!r} naming {named!r} in:\n" + "\n".join(lines)
    result = json.loads((out / "result.json").read_text())
    assert result["success"] is False and (out / "docs" / "index.html").is_file()


def test_level_tolerance_fails_a_corpus_too_small_for_a_level(
    work_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(QualityGateError, match=r"noisy_0\.3: .*\(adversarial_train\): observed"):
        run_gate("noisy@0.3", work_root, tmp_path / "report", gate_params(level_tolerance=0.01))


@pytest.mark.parametrize("gate", ["noisy@0.1", "nesting"])
def test_missing_level_fails_naming_the_stage(work_root: Path, tmp_path: Path, gate: str) -> None:
    shutil.rmtree(work_root / layout.noisy_dir(0.1))
    with pytest.raises(DataError, match=r"build_noisy@0\.1"):
        run_gate(gate, work_root, tmp_path / "report", gate_params())

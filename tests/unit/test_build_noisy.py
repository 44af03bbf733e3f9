"""Noisy corpora: nested levels, clean val/test, the chosen caption, provenance kept."""

from __future__ import annotations

import pandas as pd
import pytest

from medran.attacks.selection import attack_order
from medran.data.errors import DataError
from medran.data.manifest import NOISY_COLUMNS
from medran.pipeline.build_noisy import noisy_manifest

N = 40


def corpus() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ids = [f"upstream-{i:03d}" for i in range(N)]
    upstream = pd.DataFrame(
        {
            "id": ids,
            "image_path": [f"images/upstream/{i}.png" for i in ids],
            "caption": [f"clean caption {i}" for i in range(N)],
            "split": ["train"] * 30 + ["val"] * 5 + ["test"] * 5,
            "group_id": ids,
            "sha256": [f"{i:064x}" for i in range(N)],
            "source": "rocov2_csv",
            "source_id": ids,
        }
    )
    order = attack_order(ids[:30], seed=0)[:15]  # max_fraction 0.5
    attacks = pd.DataFrame(
        {
            "id": order,
            "rank": range(len(order)),
            "adv_image_path": [f"attacks/images/png/{i}.png" for i in order],
            "target_id": [f"targets-{k}" for k in range(len(order))],
            "adv_sha256": [f"{k:064x}".replace("0", "a") for k in range(len(order))],
        }
    )
    captions = pd.DataFrame(
        {
            "id": order,
            "adv_caption": [f"rewritten {i}" for i in order],
            "target_caption": [f"target caption {i}" for i in order],
        }
    )
    return upstream, attacks, captions


@pytest.mark.parametrize("caption", ["clean", "rewrite", "target"])
def test_levels_are_nested_and_val_test_stay_clean(caption: str) -> None:
    levels = {p: noisy_manifest(*corpus(), level=p, caption=caption) for p in (0.0, 0.1, 0.3, 0.5)}
    adversarial = {p: set(f.loc[f["is_adversarial"], "id"]) for p, f in levels.items()}
    assert [len(adversarial[p]) for p in levels] == [0, 3, 9, 15]
    assert adversarial[0.1] <= adversarial[0.3] <= adversarial[0.5]
    frame = levels[0.3]
    assert tuple(frame.columns) == NOISY_COLUMNS and len(frame) == N
    assert not frame.loc[frame["split"] != "train", "is_adversarial"].any()
    adv = frame[frame["is_adversarial"]]
    assert adv["image_path"].str.startswith("attacks/images/png/").all()
    assert adv["clean_image_path"].str.startswith("prepared/images/upstream/").all()
    assert (adv["caption_kind"] == caption).all() and adv["target_id"].notna().all()
    expected = {"clean": "clean caption", "rewrite": "rewritten", "target": "target caption"}
    assert adv["caption"].str.startswith(expected[caption]).all()
    clean = frame[~frame["is_adversarial"]]
    assert (
        clean["target_id"].isna().all() and (clean["image_path"] == clean["clean_image_path"]).all()
    )


def test_level_beyond_the_attack_is_refused() -> None:
    with pytest.raises(DataError, match="needs 18 adversarial pairs but the attack made 15"):
        noisy_manifest(*corpus(), level=0.6, caption="rewrite")


def test_attacked_id_without_caption_is_refused() -> None:
    upstream, attacks, captions = corpus()
    with pytest.raises(DataError, match="without an adversarial caption"):
        noisy_manifest(upstream, attacks, captions.iloc[1:], level=0.5, caption="rewrite")

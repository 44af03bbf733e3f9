"""``attack_captions`` with every backend, on tiny locally built models (no hub access).

The causal LM and the image-to-text model are random-init transformers models saved with
``save_pretrained``; their outputs are nonsense, which is what exercises the llm's sanity
checks and fallback counting. The retrieval captioner is a random-init ``medran-tiny`` CLIP.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medran import layout
from medran.attacks.captions.llm import LlmBackend, load_llm
from medran.attacks.captions.rules import rewrite_caption
from medran.attacks.lexicon import body_part_of
from medran.contracts import AttackCaptionsPaths
from medran.data.errors import DataError
from medran.data.manifest import ADV_CAPTION_COLUMNS, ADV_IMAGE_COLUMNS
from medran.errors import InputError
from medran.models.factory import create_clip, load_local_dir, save_local_dir
from medran.models.wrappers import ImageEncoder
from medran.pipeline import attack_captions
from tests.helpers import project_params, section
from tests.integration import tiny_hf

N_ATTACKED = 10
FORMATS = {"upstream": "rocov2_csv", "targets": "medicat_jsonl", "cls": "chestxray14_csv",
           "vqa": "vqarad_json"}  # fmt: skip
EXPERIMENT = "medran-test"


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hf.save_causal_lm(tmp_path_factory.mktemp("llm"))


@pytest.fixture(scope="module")
def image_to_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hf.save_vision_encoder_decoder(tmp_path_factory.mktemp("captioner_ved"))


@pytest.fixture(scope="module")
def prompted_captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hf.save_blip(tmp_path_factory.mktemp("captioner_blip"))


@pytest.fixture(scope="module")
def captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("surrogate") / "captioner"
    return save_local_dir(create_clip("medran-tiny", seed=1), folder)


@pytest.fixture(scope="module")
def attacked_root(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with prepared manifests and a fake ``attack_images`` output.

    Each "adversarial" image is its clean image with small seeded noise, saved as PNG, paired
    with a target of another body part, as the real attack writes it.
    """
    root = tmp_path_factory.mktemp("attacked")
    shutil.copytree(data_root / layout.PREPARED, root / layout.PREPARED)
    upstream = pd.read_parquet(root / layout.PREPARED / "upstream.parquet")
    targets = pd.read_parquet(root / layout.PREPARED / "targets.parquet")
    target_parts = targets["caption"].map(body_part_of)
    train = upstream[upstream["split"] == "train"].sort_values("id").head(N_ATTACKED)
    png = root / layout.ATTACK_IMAGES / "png"
    png.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for rank, row in enumerate(train.itertuples(index=False)):
        part = body_part_of(row.caption)
        target = targets[target_parts != part].iloc[rank % 5]
        clean = np.asarray(Image.open(root / layout.PREPARED / row.image_path), dtype=np.int16)
        adv = np.clip(clean + rng.integers(-8, 9, clean.shape), 0, 255).astype(np.uint8)
        Image.fromarray(adv).save(png / f"{row.id}.png")
        rows.append(
            {
                "id": row.id,
                "rank": rank,
                "adv_image_path": f"{layout.ATTACK_IMAGES}/png/{row.id}.png",
                "clean_image_path": f"{layout.PREPARED}/{row.image_path}",
                "target_id": target["id"],
                "target_image_path": f"{layout.PREPARED}/{target['image_path']}",
                "clean_body_part": part,
                "target_body_part": body_part_of(target["caption"]),
                "eps": 8,
                "step_size": 1.0,
                "steps": 10,
                "linf": 8,
                "l2": 1.0,
                "psnr": 40.0,
                "cos_target": 0.9,
                "cos_clean": 0.5,
                "cos_clean_target": 0.3,
                "success": True,
                "adv_sha256": "0" * 64,
            }
        )
    manifest = pd.DataFrame(rows, columns=list(ADV_IMAGE_COLUMNS))
    manifest.sample(frac=1.0, random_state=0).to_parquet(
        root / layout.ATTACK_IMAGES / "manifest.parquet", index=False
    )
    return root


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory):
    """One SQLite MLflow store for the module (creating a store costs seconds)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield uri


def run_stage(root: Path, out: Path, captioner_dir: Path | None = None, **params) -> dict:
    """The stage with ``params`` changing params.yaml's attack_captions section (and the
    caption build_noisy takes, which must match a captioner backend)."""
    noisy = {"caption": "captioner"} if params.get("backend") == "captioner" else {}
    whole = project_params(experiment=EXPERIMENT, attack_captions=params, build_noisy=noisy)
    paths = AttackCaptionsPaths(
        data=root, out=out, metrics=out.parent / "metrics.json", captioner=captioner_dir
    )
    return attack_captions.run(whole, paths=paths)


def read(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet")


def test_rules_stage_writes_the_manifest_and_an_mlflow_run(
    attacked_root: Path, tmp_path: Path, tracking: str
) -> None:
    out = tmp_path / "captions"
    metrics = run_stage(attacked_root, out, backend="rules")
    frame = read(out)
    assert tuple(frame.columns) == ADV_CAPTION_COLUMNS
    assert list(frame["id"]) == sorted(frame["id"]) and len(frame) == N_ATTACKED
    attacks = pd.read_parquet(attacked_root / layout.ATTACK_IMAGES / "manifest.parquet")
    target_part = frame["id"].map(attacks.set_index("id")["target_body_part"])
    assert (frame["adv_caption"].map(body_part_of) == target_part).all()
    assert frame["changed"].all() and not frame["fallback"].any()
    assert all(len(words) and "->" in words[0] for words in frame["changed_words"])
    targets = pd.read_parquet(attacked_root / layout.PREPARED / "targets.parquet")
    target_caption = frame["id"].map(attacks.set_index("id")["target_id"])
    assert (frame["target_caption"] == target_caption.map(targets.set_index("id")["caption"])).all()
    assert metrics["n"] == N_ATTACKED and metrics["changed_fraction"] == 1.0
    assert metrics["target_body_part_fraction"] == 1.0 and metrics["n_fallback"] == 0
    assert "| id | clean caption |" in (out / "examples.md").read_text()
    assert not list(tmp_path.glob(".captions*")), "temporary folder left behind"

    runs = mlflow.search_runs(experiment_names=[EXPERIMENT], filter_string="tags.backend='rules'")
    run = runs.iloc[0]
    assert run["tags.stage"] == "attack_captions" and run["status"] == "FINISHED"
    assert run["metrics.changed_fraction"] == 1.0
    assert run["tags.data_md5.attack_images"].endswith(".dir")
    artifacts = mlflow.MlflowClient().list_artifacts(run["run_id"])
    assert [a.path for a in artifacts] == ["examples.md"]
    # Deterministic: a second run writes the same manifest.
    run_stage(attacked_root, tmp_path / "again", backend="rules")
    pd.testing.assert_frame_equal(read(tmp_path / "again"), frame)


def test_llm_falls_back_to_rules_and_counts_it(
    attacked_root: Path, llm_dir: Path, tmp_path: Path, tracking: str
) -> None:
    # 64 random tokens are far longer than 2x a caption: every row must fall back.
    metrics = run_stage(
        attacked_root,
        tmp_path / "long",
        backend="llm",
        llm={"model": str(llm_dir), "max_new_tokens": 64},
    )
    frame = read(tmp_path / "long")
    assert frame["fallback"].all() and metrics["n_fallback"] == N_ATTACKED
    assert metrics["fallback.too_long"] + metrics.get("fallback.empty", 0) == N_ATTACKED
    attacks = pd.read_parquet(attacked_root / layout.ATTACK_IMAGES / "manifest.parquet")
    parts = frame["id"].map(attacks.set_index("id")["target_body_part"])
    expected = [
        rewrite_caption(c, p, i).caption
        for c, p, i in zip(frame.clean_caption, parts, frame.id, strict=True)
    ]
    assert list(frame["adv_caption"]) == expected
    assert (frame["backend"] == "llm").all()

    # Two new tokens are short enough to pass, so most rows keep the model's own text.
    metrics = run_stage(
        attacked_root,
        tmp_path / "short",
        backend="llm",
        llm={"model": str(llm_dir), "max_new_tokens": 2},
    )
    frame = read(tmp_path / "short")
    kept = frame[~frame["fallback"]]
    assert len(kept) > 0 and metrics["n_fallback"] == int(frame["fallback"].sum())
    assert (kept["adv_caption"].str.split().map(len) <= 2).all()
    assert kept["changed"].all()


def test_llm_uses_the_chat_template_when_there_is_one(llm_dir: Path) -> None:
    from medran.attacks.captions.base import CaptionJob

    model, tokenizer = load_llm(str(llm_dir))
    assert tokenizer.padding_side == "left"
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}> {{ m.content }} {% endfor %}"
    backend = LlmBackend(section("attack_captions").llm, model, tokenizer, seed=0)
    job = CaptionJob("upstream-1", "CT of the chest.", target_body_part="knee")
    prompt = backend._prompt(job)
    assert prompt.startswith("<user> Rewrite") and "knee" in prompt
    [rewrite] = backend.rewrite([job])
    assert rewrite.caption and isinstance(rewrite.fallback, bool)


def test_retrieval_captioner_picks_pool_captions(
    attacked_root: Path, captioner_dir: Path, tmp_path: Path, tracking: str
) -> None:
    out = tmp_path / "captions"
    metrics = run_stage(attacked_root, out, captioner_dir, backend="captioner")
    frame = read(out)
    upstream = pd.read_parquet(attacked_root / layout.PREPARED / "upstream.parquet")
    targets = pd.read_parquet(attacked_root / layout.PREPARED / "targets.parquet")
    pool = set(upstream.loc[upstream["split"] == "train", "caption"]) | set(targets["caption"])
    assert frame["adv_caption"].isin(pool).all() and (frame["backend"] == "captioner").all()
    assert not frame["fallback"].any() and metrics["n"] == N_ATTACKED
    assert (frame["changed"] == (frame["adv_caption"] != frame["clean_caption"])).all()
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string="tags.backend='captioner'"
    )
    assert "tags.data_md5.captioner" in runs.columns
    # The chosen caption is the pool's nearest under the captioner CLIP (checked for one row).
    clip = load_local_dir(captioner_dir)
    ordered = sorted(pool)
    row = frame.iloc[3]
    png = attacked_root / layout.ATTACK_IMAGES / "png" / f"{row['id']}.png"
    pixels = torch.from_numpy(np.array(Image.open(png).convert("RGB"))).permute(2, 0, 1)
    with torch.no_grad():
        image = ImageEncoder(clip).eval()(pixels[None].float() / 255)
        texts = clip.model.encode_text(clip.tokenizer()(ordered), normalize=True)
    assert row["adv_caption"] == ordered[int((image @ texts.T).argmax())]


def test_image_to_text_captioner_from_a_local_folder(
    attacked_root: Path, image_to_text_dir: Path, tmp_path: Path, tracking: str
) -> None:
    out = tmp_path / "captions"
    run_stage(
        attacked_root,
        out,
        backend="captioner",
        captioner={"model": str(image_to_text_dir), "max_new_tokens": 4},
    )
    frame = read(out)
    assert len(frame) == N_ATTACKED and frame["adv_caption"].str.len().gt(0).all()
    assert all(set(c.split()) <= set(tiny_hf.WORDS) for c in frame["adv_caption"])
    assert frame["changed"].all() and not frame["fallback"].any()


def test_prompted_image_to_text_captioner_gets_the_papers_question(
    attacked_root: Path, prompted_captioner_dir: Path, tmp_path: Path, tracking: str
) -> None:
    from medran.attacks.captions.captioner import load_image_to_text

    captions = {"backend": "captioner", "captioner": {"model": str(prompted_captioner_dir)}}
    params = project_params(attack_captions=captions, build_noisy={"caption": "captioner"})
    params = params.attack_captions
    captioner = load_image_to_text(params.captioner)
    assert captioner.prompted
    image = Image.open(next((attacked_root / layout.ATTACK_IMAGES / "png").iterdir()))
    inputs, prompt = captioner._inputs([image.convert("RGB")])
    assert prompt == "what is the content of this radiology image?"
    assert inputs["input_ids"].shape[1] > 1 and "pixel_values" in inputs
    out = tmp_path / "captions"
    run_stage(
        attacked_root,
        out,
        backend="captioner",
        captioner={"model": str(prompted_captioner_dir), "max_new_tokens": 4},
    )
    frame = read(out)
    assert len(frame) == N_ATTACKED and (frame["backend"] == "captioner").all()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"backend": "llm", "llm": {"model": "/nowhere/llm"}}, r"llm\.model.*does not exist"),
        ({"backend": "llm", "llm": {"model": "CAPTIONER"}}, r"llm\.model.*causal LM"),
        ({"backend": "captioner", "captioner": {"model": "./nowhere"}}, r"does not exist"),
        ({"backend": "captioner"}, r"captioner model folder .* does not exist"),
    ],
)
def test_bad_models_fail_before_any_work(
    attacked_root: Path, image_to_text_dir: Path, tmp_path: Path, tracking: str, params, match
) -> None:
    if params.get("llm", {}).get("model") == "CAPTIONER":
        params = {**params, "llm": {"model": str(image_to_text_dir)}}  # not a causal LM
    out = tmp_path / "captions"
    with pytest.raises(InputError, match=match):
        run_stage(attacked_root, out, tmp_path / "no-captioner", **params)
    assert not out.exists() and not list(tmp_path.glob(".captions*"))


def test_missing_attack_manifest_is_named(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"attacks/images/manifest\.parquet does not exist"):
        run_stage(data_root, tmp_path / "captions", backend="rules")


@pytest.mark.parametrize("backend", ["rules", "llm"])
def test_outputs_pass_the_adversarial_caption_gate(
    attacked_root: Path, llm_dir: Path, tracking: str, backend: str
) -> None:
    from medran.quality.adversarial import adversarial_checks
    from medran.quality.gx import validate_tables

    captions = {"backend": backend, "llm": {"model": str(llm_dir), "max_new_tokens": 2}}
    run_stage(attacked_root, attacked_root / layout.ATTACK_CAPTIONS, **captions)
    sources = {role: {"format": fmt, "path": "raw"} for role, fmt in FORMATS.items()}
    params = project_params(
        prepare_data={"sources": sources}, attack_captions=captions, noise_levels=[0.0]
    )
    [outcome] = validate_tables([adversarial_checks(attacked_root, params)["attack_captions"]])
    assert outcome.success, [(o.type, o.column, o.example_values) for o in outcome.failed]

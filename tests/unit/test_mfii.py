"""MF-ii, the attack contract, quantisation, target pairing and the attack's file helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from medran.attacks import pairing
from medran.attacks.base import cosine
from medran.attacks.files import distances, load_images, png_bytes
from medran.attacks.mfii import MFII, quantize
from medran.attacks.pgd import Budget
from medran.errors import InputError
from medran.params import PAIRING_RULES

EPS = 4


def tiny_encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # 16 px in: (16 - 3) // 2 + 1 = 7, so 8 * 7 * 7 features before the projection.
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.GELU(), nn.Flatten(), nn.Linear(392, 16))


def batch(seed: int, n: int = 4, size: int = 16) -> torch.Tensor:
    """uint8 images that include the extreme values 0 and 255."""
    pixels = torch.randint(
        0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed)
    )
    pixels[:, :, :2] = 0
    pixels[:, :, -2:] = 255
    return pixels.to(torch.uint8)


@pytest.fixture
def encoder() -> nn.Module:
    return tiny_encoder()


def attack(model: nn.Module, steps: int = 10, random_start: bool = False) -> MFII:
    return MFII(model, Budget(EPS / 255, 1 / 255, steps, random_start))


def test_saved_image_is_within_eps_exactly_and_in_range(encoder: nn.Module) -> None:
    clean, target = batch(0), batch(1)
    adv = attack(encoder)(clean.float() / 255, target.float() / 255)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - clean / 255).abs().max() <= EPS / 255 + 1e-6
    saved = quantize(adv, clean, EPS)
    assert saved.dtype == torch.uint8
    assert (saved.int() - clean.int()).abs().max() <= EPS


def test_cosine_to_target_increases_and_encoder_is_frozen(encoder: nn.Module) -> None:
    clean, target = batch(2).float() / 255, batch(3).float() / 255
    adv = attack(encoder, steps=20)(clean, target)
    with torch.no_grad():
        before = cosine(encoder(clean), encoder(target))
        after = cosine(encoder(adv), encoder(target))
    assert (after > before).all()
    assert not encoder.training
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())


def test_random_start_is_seeded(encoder: nn.Module) -> None:
    clean, target = batch(4).float() / 255, batch(5).float() / 255
    mfii = attack(encoder, steps=1, random_start=True)
    first = mfii.manual_seed(7)(clean, target)
    assert torch.equal(first, mfii.manual_seed(7)(clean, target))
    assert not torch.equal(first, mfii.manual_seed(8)(clean, target))
    assert (first - clean).abs().max() <= EPS / 255 + 1e-6


def test_bad_inputs_fail_with_the_value(encoder: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"float \(B, C, H, W\)"):
        attack(encoder)(batch(0), batch(1))
    with pytest.raises(ValueError, match="4 images but 2 targets"):
        attack(encoder)(batch(0).float(), batch(1)[:2].float())
    with pytest.raises(ValueError, match="eps=0"):
        MFII(encoder, Budget(0, 1 / 255, 100, random_start=False))
    with pytest.raises(ValueError, match="uint8"):
        quantize(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), EPS)


@pytest.mark.parametrize(
    ("clean", "adv", "expected"),
    [
        (0, -0.5, 0),  # below the pixel range
        (0, 10 / 255, EPS),  # past the budget
        (255, 1.5, 255),  # above the pixel range
        (255, 0.0, 255 - EPS),  # past the budget, downward
        (100, (100 + EPS + 0.49) / 255, 100 + EPS),  # rounds to eps + 0, not eps + 1
        (100, (100 - 2.4) / 255, 98),  # inside the budget: plain rounding
        (3, 0.0, 0),  # the budget reaches below 0: clipped to the range
    ],
)
def test_quantise_edge_cases(clean: int, adv: float, expected: int) -> None:
    clean_t = torch.full((1, 3, 2, 2), clean, dtype=torch.uint8)
    saved = quantize(torch.full((1, 3, 2, 2), adv), clean_t, EPS)
    assert saved.unique().tolist() == [expected]


def test_png_is_lossless_and_byte_stable() -> None:
    pixels = batch(8, n=1)[0].permute(1, 2, 0).numpy()
    data = png_bytes(pixels)
    assert data == png_bytes(pixels.copy())
    assert torch.equal(
        load_images([io.BytesIO(data)])[0].permute(1, 2, 0), torch.from_numpy(pixels)
    )
    with Image.open(io.BytesIO(data)) as img:
        assert img.info == {} or set(img.info) <= {"dpi"}


def test_distances() -> None:
    clean = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    adv = clean.clone()
    adv[0, 0, 0, 0] = 6
    linf, l2, psnr = distances(adv, clean)
    assert linf == [6, 0]
    assert l2[0] == pytest.approx(6 / 255) and l2[1] == 0
    assert psnr[0] == pytest.approx(10 * np.log10(48 / (6 / 255) ** 2)) and psnr[1] == np.inf


# --- pairing ---------------------------------------------------------------------------------

CLEAN = {
    "u-1": "Axial CT of the brain showing a hemorrhage.",
    "u-2": "Chest radiograph: no abnormality.",
    "u-3": "A picture of nothing in particular.",
}
TARGETS = {
    "t-1": "MRI of the brain.",
    "t-2": "CT of the abdomen showing a cyst.",
    "t-3": "Knee radiograph with a fracture.",
    "t-4": "Photograph of a microscope.",
}


def test_registry_matches_the_params_choices() -> None:
    assert tuple(sorted(pairing.PAIRING)) == tuple(sorted(PAIRING_RULES))


def test_different_body_part() -> None:
    pairs = pairing.pair_targets(CLEAN, TARGETS, "different_body_part", seed=0)
    assert [p.id for p in pairs] == list(CLEAN)
    by_id = {p.id: p for p in pairs}
    assert by_id["u-1"].clean_body_part == "brain"
    for pair in pairs:
        assert pair.target_body_part is not None
        assert pair.target_body_part != pair.clean_body_part
        assert pair.target_body_part == pairing.body_part_of(TARGETS[pair.target_id])
    assert by_id["u-3"].clean_body_part is None  # unknown: any target with a known part


def test_choice_is_seeded_per_item() -> None:
    many = {f"u-{i}": "CT of the chest." for i in range(50)}
    full = pairing.pair_targets(many, TARGETS, "random", seed=0)
    alone = pairing.pair_targets({"u-7": many["u-7"]}, TARGETS, "random", seed=0)
    assert alone[0] == full[7]
    assert len({p.target_id for p in full}) == len(TARGETS)  # "random" may pick any target
    other = pairing.pair_targets(many, TARGETS, "random", seed=1)
    assert [p.target_id for p in other] != [p.target_id for p in full]


def test_unsatisfiable_rule_names_the_item_and_body_part() -> None:
    only_brain = {"t-1": TARGETS["t-1"], "t-4": TARGETS["t-4"]}
    with pytest.raises(InputError, match=r"no target for u-1 \(body part 'brain'\).*\['brain'\]"):
        pairing.pair_targets(CLEAN, only_brain, "different_body_part", seed=0)


def test_unknown_rule_lists_the_rules() -> None:
    with pytest.raises(InputError, match=r"unknown pairing rule 'nearest'.*different_body_part"):
        pairing.pair_targets(CLEAN, TARGETS, "nearest", seed=0)
    with pytest.raises(InputError, match=str(sorted(pairing.PAIRING)).replace("[", r"\[")):
        pairing.get_rule("nearest")

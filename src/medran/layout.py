"""Where each stage's data lives, relative to the data root (``data/`` in the project).

Image paths inside manifests are relative to the folder the manifest describes (prepared
manifests) or to the data root (attack and noisy manifests, which mix sources), so a data
root can be moved or fetched with ``dvc pull`` as a whole. ``dvc.yaml`` mirrors these names.
"""

from __future__ import annotations

from pathlib import Path

PREPARED = Path("prepared")
ATTACK_IMAGES = Path("attacks/images")
ATTACK_CAPTIONS = Path("attacks/captions")
NOISY = Path("noisy")


def level_name(level: float) -> str:
    """The folder and stage key of a noise level: 0.1 -> '0.1', 0 -> '0.0'."""
    return repr(float(level))


def noisy_dir(level: float) -> Path:
    return NOISY / level_name(level)

"""Which model names resolve, answered without importing open_clip (seconds of start-up that
params validation in every stage would otherwise pay).

open_clip's own names are the JSON configs shipped in its package (what ``list_models``
reads); ours are the configs in ``configs/``, registered with open_clip by the factory.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from medran.errors import InputError

CONFIG_DIR = Path(__file__).parent / "configs"
CONFIG_FILE = "open_clip_config.json"
LOCAL, HUB = "local-dir:", "hf-hub:"


def known_model_names() -> list[str]:
    spec = importlib.util.find_spec("open_clip")  # locates the package, does not import it
    folders = [Path(p) / "model_configs" for p in spec.submodule_search_locations or []]
    return sorted({f.stem for d in [*folders, CONFIG_DIR] for f in d.glob("*.json")})


def check_model_name(name: str) -> None:
    """Fail fast on a name open_clip cannot resolve, listing close matches."""
    if name.startswith(HUB):
        return
    if name.startswith(LOCAL):
        folder = Path(name.removeprefix(LOCAL))
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(f"model {name!r}: {folder / CONFIG_FILE} does not exist")
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            raise InputError(f"model {name!r}: no weights (*.safetensors) in {folder}")
        return
    known = known_model_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"close matches: {close}" if close else f"known: {known[:20]} ..."
        raise InputError(
            f"unknown open_clip model {name!r}; {hint}; or use 'hf-hub:org/repo' / 'local-dir:PATH'"
        )

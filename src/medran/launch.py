"""Start a stage under ``accelerate launch`` when its params ask for several processes.

One process (the default) runs as plain ``python``: no launcher start-up cost. With
``num_processes > 1`` the stage re-executes itself through ``accelerate launch --config_file
<pretrain.accelerate_config>``: the file gives the topology (the default,
``configs/accelerate/one-machine.yaml``: one process per GPU, or real CPU DDP over gloo with
``cpu=True`` in the Accelerator; a user's multi-node, FSDP or DeepSpeed config alike), and the
params' ``num_processes`` and ``mixed_precision`` override the file's, so the batch arithmetic
holds. A job started under ``accelerate launch`` by hand sees ``WORLD_SIZE`` set and is left
alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from medran.errors import InputError

if TYPE_CHECKING:
    from medran.params import PretrainParams


def launched() -> bool:
    return "WORLD_SIZE" in os.environ


def check_config(path: str) -> Path:
    """The Accelerate config file, or an error naming it, before any work."""
    config = Path(path)
    try:
        content = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"pretrain.accelerate_config {path!r} cannot be read: {e}") from e
    if not isinstance(content, dict) or "distributed_type" not in content:
        raise InputError(
            f"pretrain.accelerate_config {path!r} is not an Accelerate config (a mapping with "
            "distributed_type, as `accelerate config` writes it)"
        )
    return config


def relaunch(p: PretrainParams) -> None:
    """Replace this process with ``accelerate launch`` of the same command, if needed."""
    if p.num_processes <= 1 or launched():
        return
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(check_config(p.accelerate_config)),
        "--num_processes",
        str(p.num_processes),
        "--mixed_precision",
        p.mixed_precision,
        "--dynamo_backend",
        "no",
        *sys.argv,
    ]
    sys.stdout.flush()
    os.execv(sys.executable, command)


def is_main_process() -> bool:
    """Rank 0 of a launched job, or the only process (decides who writes stage outputs)."""
    return int(os.environ.get("RANK", "0")) == 0

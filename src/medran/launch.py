"""Start a stage under ``accelerate launch`` when its params ask for several processes.

One process (the default) runs as plain ``python``: no launcher start-up cost. With
``num_processes > 1`` the stage re-executes itself through ``accelerate launch``; on a
machine without GPUs that is real CPU DDP over gloo (``--multi_gpu`` plus ``cpu=True`` in
the Accelerator), otherwise one process per GPU. Multi-node runs call ``accelerate launch``
themselves (``--num_machines``, ``--machine_rank``, ``--main_process_ip``) around the same
stage command; this module then sees ``WORLD_SIZE`` set and does nothing.
"""

from __future__ import annotations

import os
import sys


def launched() -> bool:
    return "WORLD_SIZE" in os.environ


def relaunch(num_processes: int, mixed_precision: str = "no") -> None:
    """Replace this process with ``accelerate launch`` of the same command, if needed."""
    if num_processes <= 1 or launched():
        return
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        mixed_precision,
        "--dynamo_backend",
        "no",
        *sys.argv,
    ]
    sys.stdout.flush()
    os.execv(sys.executable, command)


def is_main_process() -> bool:
    """Rank 0 of a launched job, or the only process (decides who writes stage outputs)."""
    return int(os.environ.get("RANK", "0")) == 0

"""Test-wide settings: no hub lookups, quiet logs, and the tier markers."""

import os
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MEDRAN_LOG_LEVEL", "WARNING")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """In-process tests run tiny models: thread start-up and contention cost more than the
    work. Stages the pipeline tests start in subprocesses keep torch's default."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

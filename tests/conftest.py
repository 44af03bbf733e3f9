"""Test-wide settings: no hub lookups, quiet logs, and the tier markers."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MEDRAN_LOG_LEVEL", "WARNING")

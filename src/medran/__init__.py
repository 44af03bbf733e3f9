"""medran: adversarial upstream noise in medical vision-language models, and the RAN defense."""

import os

__version__ = "0.1.0"

# No usage telemetry from the libraries medran drives, unless a user opts in by setting these
# (DVC's is off in the project's config).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

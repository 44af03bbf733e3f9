"""medran: adversarial upstream noise in medical vision-language models, and the RAN defense."""

__version__ = "0.1.0"

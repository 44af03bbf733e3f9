"""Data: the synthetic generator, format readers for real datasets, and canonical manifests."""

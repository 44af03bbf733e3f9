"""Data-quality gates: per-image facts, suites built in code and the one GX adapter."""

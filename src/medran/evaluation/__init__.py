"""Evaluation: retrieval and zero-shot metrics, task metrics, robust evaluation."""

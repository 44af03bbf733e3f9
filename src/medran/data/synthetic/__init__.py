"""Procedural synthetic medical corpus: attributes, rendering, captions/VQA and writers."""

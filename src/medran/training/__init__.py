"""Training: the one Accelerate loop, its objectives and the cached tensor datasets."""

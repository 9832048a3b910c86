"""Training and inference data: the one image pipeline, the dataset layouts, the epoch sampler."""

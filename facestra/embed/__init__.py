"""``facestra embed``: batched inference with the protocol's flip modes, and the resumable .npy writer."""

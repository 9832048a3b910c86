"""``facestra train``: backbone + margin head + diversity loss, from one CPU process to many GPUs."""

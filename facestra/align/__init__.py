"""``facestra align``: five landmarks (from a file or a detector) -> the canonical similarity-warped crop."""

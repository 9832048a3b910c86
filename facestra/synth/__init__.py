"""``facestra synth``: the embedded synthetic face data set (identities, photos, benchmark pairs)."""

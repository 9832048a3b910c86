"""``facestra synth``: the embedded synthetic face data set (identities, photos, benchmark pairs)."""

from facestra.synth.dataset import SynthSettings, SynthSummary, synthesize

__all__ = ["SynthSettings", "SynthSummary", "synthesize"]

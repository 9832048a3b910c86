"""``facestra embed``: batched inference with the protocol's flip modes, and the resumable .npy writer.

Only :class:`InferenceOptions` is imported eagerly; the rest loads torch, so it is imported on first use
(``facestra --help`` lists every command's options without importing torch).
"""

from __future__ import annotations

from facestra.embed.options import InferenceOptions
from facestra.lazy import lazy_attributes

_LAZY = {
    "EmbedReport": "facestra.embed.job",
    "embed_to_file": "facestra.embed.job",
    "input_images": "facestra.embed.job",
    "embed_benchmark": "facestra.embed.inference",
    "embed_images": "facestra.embed.inference",
    "iter_embeddings": "facestra.embed.inference",
    "load_for_inference": "facestra.embed.inference",
    "read_paths": "facestra.embed.paths",
}

__all__ = ["InferenceOptions", *_LAZY]

__getattr__ = lazy_attributes(__name__, _LAZY)

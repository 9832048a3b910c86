"""``facestra embed``: batched inference with the protocol's flip modes, and the resumable .npy writer.

Only :class:`InferenceOptions` is imported eagerly; the rest loads torch, so it is imported on first use
(``facestra --help`` lists every command's options without importing torch).
"""

from __future__ import annotations

from facestra.embed.options import InferenceOptions
from facestra.lazy import lazy_package

__all__, __getattr__ = lazy_package(
    __name__,
    {
        ".job": "EmbedReport embed_to_file input_images",
        ".inference": "embed_benchmark embed_images iter_embeddings load_for_inference",
        ".paths": "read_paths",
    },
)

__all__ = ["InferenceOptions", *__all__]

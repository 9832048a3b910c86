"""``facestra embed``: batched inference with the protocol's flip modes, and the resumable .npy writer."""

from facestra.embed.inference import InferenceOptions, embed_benchmark, embed_images, iter_embeddings, load_for_inference
from facestra.embed.job import EmbedReport, embed_to_file, input_images

__all__ = [
    "EmbedReport",
    "InferenceOptions",
    "embed_benchmark",
    "embed_images",
    "embed_to_file",
    "input_images",
    "iter_embeddings",
    "load_for_inference",
]

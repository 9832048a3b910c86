"""``facestra align``: five landmarks (from a file or a detector) -> the canonical similarity-warped crop."""

from facestra.align.geometry import estimate_similarity, reference_landmarks, warp_face
from facestra.align.job import AlignOptions, align_images
from facestra.align.records import AlignProblems, AlignSummary

__all__ = [
    "AlignOptions",
    "AlignProblems",
    "AlignSummary",
    "align_images",
    "estimate_similarity",
    "reference_landmarks",
    "warp_face",
]

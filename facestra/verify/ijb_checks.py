"""The checks the pair protocol has (:mod:`facestra.verify.checks`), for IJB: figures that would mean
nothing are refused before any image is embedded, doubtful ones are warned of; never a silent 100 %.

Refused: template pairs of one kind (a ROC needs both), a gallery whose probes are all mated or all
non-mated (TPIR at FPIR needs non-mated searches to set the threshold and mated ones to count), detector
scores that make every template of the pairs zero (``ijb_detector_score`` with scores all 0: every pair
would score 0). Warned of: fewer different-subject pairs than the smallest FAR needs, and templates that
only some zero scores empty.
"""

from __future__ import annotations

import numpy as np

from facestra.errors import UserError
from facestra.protocols.ijb import META_FOLDER, IJBData, meta_files
from facestra.verify.templates import IJB_FAR_TARGETS, TemplateOptions


def check_ijb(data: IJBData, options: TemplateOptions = TemplateOptions()) -> list[str]:
    """Refuse (:class:`UserError`) an IJB benchmark that cannot give meaningful figures under ``options``;
    return the warnings for one that can."""
    pairs_file = data.root / META_FOLDER / meta_files(data.name)["pairs"]
    same = int(np.count_nonzero(data.labels))
    different = len(data.labels) - same
    if same == 0 or different == 0:
        kind = "different-subject (label 0)" if same == 0 else "same-subject (label 1)"
        raise UserError(f"{pairs_file}: every one of its {len(data.labels)} template pairs is a {kind} pair; "
                        "TAR at FAR needs pairs of both kinds")
    warnings = []
    smallest = min(IJB_FAR_TARGETS)
    if different * smallest < 1:
        warnings.append(f"{pairs_file}: {different} different-subject pairs; TAR at a FAR below {1 / different:.1g} is "
                        "read at the ROC's nearest point and says little")
    warnings += _check_detector_scores(data, options)
    if data.probes is not None:
        for label, gallery in data.galleries.items():
            mated = int(np.count_nonzero(np.isin(data.probes.subjects, gallery.subjects)))
            nonmated = len(data.probes.subjects) - mated
            if mated == 0 or nonmated == 0:
                kind = "mated (their subject is in the gallery)" if nonmated == 0 else "non-mated (their subject is not in the gallery)"
                raise UserError(f"{data.probes.source}: against gallery {label} ({gallery.source}) every probe is {kind}; "
                                "open-set 1:N needs both (remove the 1:N lists for 1:1 figures only)")
    return warnings


def _check_detector_scores(data: IJBData, options: TemplateOptions) -> list[str]:
    if not options.ijb_detector_score:
        return []
    scores_file = data.root / META_FOLDER / meta_files(data.name)["landmarks"]
    paired = np.unique(data.pairs)
    templates, inverse = np.unique(data.templates, return_inverse=True)
    weight = np.zeros(len(templates))
    np.add.at(weight, inverse.reshape(-1), np.abs(data.detector_scores))
    empty = templates[weight == 0]
    empty_paired = np.intersect1d(empty, paired)
    if len(empty_paired) == len(paired):
        raise UserError(f"{scores_file}: the detector scores of every template's images are 0, so every template feature "
                        "is zero and every pair scores the same; turn the detector-score weighting off (ijb_detector_score)")
    if len(empty_paired):
        return [f"{scores_file}: {len(empty_paired)} of {len(paired)} paired templates have only images of detector score 0: "
                "their features are zero and their pairs score 0"]
    return []

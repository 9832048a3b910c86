"""``facestra verify``: the 10-fold pair protocol, benchmark runs, reports and figures; ``compare``; ``calibrate``.

Names are imported on first use, since most load torch: ``facestra --help`` and ``facestra compare --help``
build their options from :class:`CompareOptions` without importing it.
"""

from __future__ import annotations

from facestra.lazy import lazy_attributes

_LAZY = {
    "BenchmarkOutcome": "facestra.verify.benchmarks",
    "select_benchmarks": "facestra.verify.benchmarks",
    "verify_model": "facestra.verify.benchmarks",
    "verify_each": "facestra.verify.benchmarks",
    "BenchmarkFailure": "facestra.verify.benchmarks",
    "check_benchmark": "facestra.verify.checks",
    "check_images": "facestra.verify.checks",
    "VerificationResult": "facestra.verify.pairs",
    "evaluate": "facestra.verify.pairs",
    "format_table": "facestra.verify.report",
    "report_dict": "facestra.verify.report",
    "write_json": "facestra.verify.report",
    "CompareOptions": "facestra.verify.compare",
    "Comparison": "facestra.verify.compare",
    "compare_images": "facestra.verify.compare",
    "compare_pairs": "facestra.verify.compare",
    "CalibrationOptions": "facestra.verify.calibration",
    "calibrate_scores": "facestra.verify.calibration",
    "calibrate": "facestra.verify.calibration_job",
    "load_calibration": "facestra.verify.calibration_job",
    "save_calibrated_model": "facestra.verify.calibration_job",
    "write_calibration": "facestra.verify.calibration_job",
}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)

"""``facestra verify``: the 10-fold pair protocol, benchmark runs, reports and figures; ``compare``; ``calibrate``.

Names are imported on first use, since most load torch: ``facestra --help`` and ``facestra compare --help``
build their options from :class:`CompareOptions` without importing it.
"""

from __future__ import annotations

from facestra.lazy import lazy_package

__all__, __getattr__ = lazy_package(
    __name__,
    {
        ".benchmarks": "BenchmarkOutcome select_benchmarks verify_model verify_each BenchmarkFailure",
        ".checks": "check_benchmark check_images",
        ".pairs": "VerificationResult evaluate",
        ".report": "format_table report_dict write_json",
        ".compare": "CompareOptions Comparison compare_images compare_pairs",
        ".calibration": "CalibrationOptions calibrate_scores",
        ".calibration_job": "calibrate load_calibration save_calibrated_model write_calibration",
    },
)

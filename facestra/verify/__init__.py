"""``facestra verify``: the 10-fold pair protocol, benchmark runs, reports and figures."""

from facestra.verify.benchmarks import BenchmarkOutcome, select_benchmarks, verify_model
from facestra.verify.pairs import VerificationResult, evaluate
from facestra.verify.report import format_table, report_dict, write_json

__all__ = [
    "BenchmarkOutcome",
    "VerificationResult",
    "evaluate",
    "format_table",
    "report_dict",
    "select_benchmarks",
    "verify_model",
    "write_json",
]

"""``facestra verify``: the 10-fold pair protocol, benchmark runs, reports and figures."""

"""Benchmark protocol readers (LFW, CFP-FP, CPLFW, CALFW, AgeDB-30, .bin, pairs.csv)."""

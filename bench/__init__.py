"""Benchmarks: each script runs the real stack and prints ratios against an in-run baseline."""

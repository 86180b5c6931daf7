"""Benchmarks: `python -m benchmarks` runs them all; see docs/benchmarks.md."""

"""Benchmarks: speed and likelihood measurements (never timed unit tests)."""

"""Benchmark scripts (python -m bench.<name>); they print tables, they are not tests."""

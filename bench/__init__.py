"""Benchmark tooling: the synthetic enterprise generator and its loader."""

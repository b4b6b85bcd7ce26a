"""Latency-constrained architecture search over the supernet (coordinate descent and baselines)."""

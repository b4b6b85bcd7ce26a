"""Scoring subnets: metrics, BN recalibration, and the cached evaluator the search calls."""

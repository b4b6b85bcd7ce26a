"""Shared pytest fixtures: the tiny synthetic set and the tiny trained supernet (session-scoped, built once)."""
from tests.train_helpers import tiny_ckpt, tiny_data

__all__ = ["tiny_ckpt", "tiny_data"]

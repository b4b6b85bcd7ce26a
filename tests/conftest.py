"""Fixtures shared by several test files (imported here so that pytest finds them and ruff sees no redefinition)."""
from tests.train_helpers import tiny_ckpt, tiny_data  # noqa: F401  (pytest fixtures)

"""Session fixtures shared by the training/evaluation tests (defined in tests/train_helpers.py).

Registered here rather than imported by each test module: an imported fixture used as a parameter is a
redefinition to pyflakes/ruff (F811)."""
from tests.train_helpers import tiny_ckpt, tiny_data  # noqa: F401

"""Shared pytest fixtures: the tiny synthetic set and the tiny trained supernet (session-scoped, built once).

Also: a suite started under ``nohup`` (or anything that ignores SIGHUP) would hand that ignored SIGHUP to every
shell it starts, and a shell cannot trap a signal ignored on entry, so the batch script's hang-up cleanup (which
a phone's adbd shell runs with default signals) could not be tested. A Python handler that does nothing keeps
this process alive on a hang-up just the same, and exec resets a handled signal to the default in children.
"""
import signal

import pytest

from tests.train_helpers import tiny_ckpt, tiny_data

if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Every test starts with the process's torch thread count: a test that changes it (``run_demo`` picks 1 thread
    on a loaded machine, in-process callers included) must not change the summation order, and so the numbers, of
    the tests after it."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


__all__ = ["tiny_ckpt", "tiny_data"]

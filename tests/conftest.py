"""Shared pytest fixtures: the tiny synthetic set and the tiny trained supernet (session-scoped, built once).

Also: a suite started under ``nohup`` (or anything that ignores SIGHUP) would hand that ignored SIGHUP to every
shell it starts, and a shell cannot trap a signal ignored on entry, so the batch script's hang-up cleanup (which
a phone's adbd shell runs with default signals) could not be tested. A Python handler that does nothing keeps
this process alive on a hang-up just the same, and exec resets a handled signal to the default in children.
"""
import signal

from tests.train_helpers import tiny_ckpt, tiny_data

if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)

__all__ = ["tiny_ckpt", "tiny_data"]

"""Stage functions for test_pipeline.py, in a module of their own so that the
worker processes of backend="multiprocessing" can import them: a child
process finds a function by its module and name, and gets the parent's
sys.path, where pytest put this directory (a child Python started by a test
puts it there itself).
"""

from __future__ import annotations

import threading
import time

SLOW = 0.01  # seconds per item of the deliberately slow stage


def inc(x):
    return x + 1


def double(x):
    return 2 * x


def identity(x):
    return x


def slow(x):
    time.sleep(SLOW)
    return x


def sleepy(x):
    """A little work that gives the other threads and processes a turn."""
    time.sleep(0.002)
    return x


def jitter(x):
    """Items that finish out of order: every third one takes longer."""
    time.sleep(0.004 if x % 3 == 0 else 0.0005)
    return x


def fail_at(position, x):
    """x, except that item ``position`` fails (with functools.partial)."""
    if x == position:
        raise ValueError(f"fail_at {position}")
    return x


class TwoArgError(ValueError):
    """An exception that pickles but does not unpickle (its __init__ takes two)."""

    def __init__(self, a, b):
        super().__init__(f"two args: {a} {b}")


def raise_two_arg(x):
    if x == 3:
        raise TwoArgError(x, "b")
    return x


def make_lock(x):
    """A result that does not pickle."""
    return threading.Lock() if x == 2 else x


def slow_first(x):
    """Item 0 takes half a second, the others nothing."""
    if x == 0:
        time.sleep(0.5)
    return x


class Token:
    """An item whose death a weak reference shows."""

    def __init__(self, n):
        self.n = n


def unwrap(token):
    return token.n


def fail_late_first(marker, x):
    """Every item fails; item 0 only after item 1 has failed (with
    functools.partial of a path: item 0 creates it once it runs, item 1
    fails once it exists), so the first failure in time is not the first in
    input order."""
    import os

    if x == 0:
        open(marker, "w").close()
        time.sleep(0.3)
    elif x == 1:
        deadline = time.monotonic() + 10
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.001)
    raise ValueError(f"item {x}")

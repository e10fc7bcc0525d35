"""Helpers shared by test_pool.py and test_executor.py, which hold parpy's
pool and executor to the assertions of the stdlib's own tests.

The ``work`` fixture (conftest.py) runs each result test three ways: plain Python functions, parpy's
pure-Python twins, and parpy's native kernels (which the stdlib's pools can
call too, one item at a time).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import threading
import time
from collections.abc import Callable

import parpy
import parpy.reference

TIMEOUT = 10.0  # seconds: any single wait that should succeed
SHORT = 0.1  # seconds: a wait that is meant to time out, a small sleep


def within(timeout, fn, *args, **kwargs):
    """Returns fn(*args, **kwargs), called on a helper thread; fails if it takes > timeout."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised below, on the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn!r} did not return within {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def wait_until(predicate, timeout=TIMEOUT):
    """Polls predicate() (collecting garbage first) until it holds; returns whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def square(x):
    return x * x


def mul(x, y):
    return x * y


def identity(x):
    return x


def sleepy_square(x, wait):
    time.sleep(wait)
    return x * x


class Token:
    """An object that can be weakly referenced."""

    def method(self):
        pass


def make_token(_):
    return Token()


@dataclasses.dataclass(frozen=True)
class Work:
    """A function of one item and one of two, their serial oracles, and an item they reject."""

    name: str
    func: Callable
    oracle: Callable
    func2: Callable
    oracle2: Callable
    bad_item: object
    bad_error: type[Exception]

    @staticmethod
    def items(count):
        return list(range(count))

    def expected(self, items):
        return [self.oracle(x) for x in items]

    @staticmethod
    def pairs(count):
        return [(n, m) for n, m in zip(range(count), range(count, 0, -1), strict=True)]

    def expected2(self, pairs):
        return list(itertools.starmap(self.oracle2, pairs))


WORKS = {
    "python": Work("python", square, square, mul, mul, None, TypeError),
    "reference": Work(
        "reference",
        parpy.reference.fib,
        parpy.reference.fib,
        parpy.reference.fib_mod,
        parpy.reference.fib_mod,
        -1,
        ValueError,
    ),
    "kernel": Work(
        "kernel",
        parpy.fib,
        parpy.reference.fib,
        parpy.fib_mod,
        parpy.reference.fib_mod,
        -1,
        ValueError,
    ),
}

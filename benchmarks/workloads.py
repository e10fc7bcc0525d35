"""The inputs of parpy's benchmarks, shared by the bench_*.py suites and ratios.py.

Fixed seeds, so that every run and every machine times the same batches.
"""

from __future__ import annotations

from collections.abc import Callable

import parpy
from parpy.compare import make_ns, runners

try:
    import gmpy2
except ImportError:  # the gmpy2 comparisons are skipped
    gmpy2 = None

WORKERS = 2

# Items of similar cost: 400 values of n in [10**5, 2 * 10**5].
BALANCED = make_ns(400, 10**5, 2 * 10**5, seed=1)
# Item costs that differ by orders of magnitude: log(n) uniform in [log 10, log 10**6].
SKEWED = make_ns(1000, 10, 10**6, "loguniform", seed=2)
# The book's loop, for like-for-like runs against the pure-Python twin.
ITERATIVE = make_ns(200, 15_000, 50_000, seed=3)
# Results that fit in 64 bits: granularity, where overhead is everything.
TINY = make_ns(100, 0, 93, seed=4)


def candidates(ns: list[int], algorithm: str = "doubling") -> dict[str, Callable[[], object]]:
    """Return the calls that compute ``[F(n) for n in ns]`` with ``algorithm``, by name.

    The backends of ``python -m parpy compare`` on ``WORKERS`` workers and, for
    fast doubling, loops over ``parpy.fib`` and (when installed) ``gmpy2.fib``.
    """
    calls: dict[str, Callable[[], object]] = dict(runners(algorithm, ns, WORKERS))
    if algorithm == "doubling":
        calls["parpy.fib-loop"] = lambda: [parpy.fib(n) for n in ns]
        if gmpy2 is not None:
            calls["gmpy2.fib-loop"] = lambda: [gmpy2.fib(n) for n in ns]
    return calls

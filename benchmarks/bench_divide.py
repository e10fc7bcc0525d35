"""Divide and conquer on one huge number: one call of parpy.fib(n, workers=k)
and parpy.to_decimal(x, workers=k) against one thread and gmpy2 (GMP's own
mpz_fib_ui and mpz_get_str), side by side in one run.

    python -m pytest benchmarks/bench_divide.py --benchmark-only

Targets (benchmarks/ratios.py measures the ratios): F(10**8) with 2 workers
at least 1.4x faster than gmpy2.fib(10**8); to_decimal(F(10**7)) with 2
workers at least 1.6x faster than gmpy2's digits(); below the split size,
workers=None never slower than one thread.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from workloads import gmpy2

import parpy

FIB_N = 10**8
DECIMAL_N = 10**7
SMALL_N = 2 * 10**6  # F(n) below the split size: one thread


def divide_candidates(what: str) -> dict[str, Callable[[], object]]:
    """One call of F(FIB_N) ("fib"), of the digits of F(DECIMAL_N) ("decimal"),
    or of F(SMALL_N) ("small"): parpy at 1 and 2 workers (and workers=None),
    and gmpy2 when installed."""
    if what == "fib":
        calls: dict[str, Callable[[], object]] = {
            "parpy-2": lambda: parpy.fib(FIB_N, workers=2),
            "parpy-1": lambda: parpy.fib(FIB_N, workers=1),
        }
        if gmpy2 is not None:
            calls["gmpy2.fib"] = lambda: gmpy2.fib(FIB_N)
        return calls
    if what == "decimal":
        x = parpy.fib(DECIMAL_N)
        calls = {
            "parpy-2": lambda: parpy.to_decimal(x, workers=2),
            "parpy-1": lambda: parpy.to_decimal(x, workers=1),
        }
        if gmpy2 is not None:
            calls["gmpy2.digits"] = gmpy2.mpz(x).digits
        return calls
    if what == "small":
        return {
            "parpy-None": lambda: parpy.fib(SMALL_N),
            "parpy-1": lambda: parpy.fib(SMALL_N, workers=1),
        }
    raise ValueError(what)


@pytest.mark.parametrize("what", ["fib", "decimal", "small"])
@pytest.mark.parametrize("name", ["parpy-2", "parpy-1", "parpy-None", "gmpy2"])
def bench_divide(benchmark, what, name):
    calls = divide_candidates(what)
    call = next((c for k, c in calls.items() if k.startswith(name)), None)
    if call is None:
        pytest.skip(f"no {name} call for {what}")
    benchmark.group = {"fib": "F(10**8)", "decimal": "to_decimal(F(10**7))", "small": "F(2*10**6)"}[
        what
    ]
    benchmark.pedantic(call, rounds=5, warmup_rounds=1)

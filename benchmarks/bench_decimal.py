"""Decimal conversion of F(10**6): parpy.to_decimal against str() (its
sys.int_max_str_digits limit lifted), the pure-Python twin and gmpy2's
mpz.digits(), side by side in one run.

    python -m pytest benchmarks/bench_decimal.py --benchmark-only

Targets: to_decimal at least 20x faster than str() on Python 3.11, and within
1.25x of gmpy2 (benchmarks/ratios.py measures the ratios).
"""

from __future__ import annotations

import pytest
from workloads import decimal_candidates

CALLS = decimal_candidates()


@pytest.mark.parametrize("name", list(CALLS))
def bench_to_decimal(benchmark, name):
    benchmark.group = "to_decimal(F(10**6))"
    benchmark(CALLS[name])

"""Fibonacci batches: parpy against its pure-Python twin on one thread, threading
and multiprocessing, and against gmpy2.fib, side by side in one run.

    python -m pytest benchmarks --benchmark-only

One group per workload (see workloads.py); within a group pytest-benchmark
lists every candidate with, in brackets, its ratio to the fastest. The
parallel candidates run on workloads.WORKERS workers. benchmarks/ratios.py
turns the same workloads into the ratios the README quotes.
"""

from __future__ import annotations

import time

import pytest
from workloads import BALANCED, ITERATIVE, SKEWED, TINY, candidates, gmpy2

WORKLOADS = {
    "balanced": candidates(BALANCED),
    "skewed": candidates(SKEWED),
    "iterative": candidates(ITERATIVE, "iterative"),
    "tiny": candidates(TINY),
}
CASES: list = [(group, name) for group, calls in WORKLOADS.items() for name in calls]
if gmpy2 is None:
    CASES += [
        pytest.param(
            group, "gmpy2.fib-loop", marks=pytest.mark.skip(reason="gmpy2 is not installed")
        )
        for group, calls in WORKLOADS.items()
        if "parpy.fib-loop" in calls
    ]


@pytest.mark.parametrize(("group", "name"), CASES)
def bench_fib(benchmark, group, name):
    benchmark.group = group
    benchmark(WORKLOADS[group][name])


@pytest.mark.parametrize("name", ["parpy", "parpy-serial", "parpy.fib-loop"])
def bench_tiny_after_idle(benchmark, name):
    """The tiny workload, each call after the process slept 30 ms: its code and data out of
    the caches, as for a call now and then (ratios.py has its row)."""
    benchmark.group = "tiny, each call after 30 ms idle"
    benchmark.pedantic(
        WORKLOADS["tiny"][name], setup=lambda: time.sleep(0.03), rounds=61, iterations=1
    )

"""Measure, in one run, the ratios the README quotes.

    python benchmarks/ratios.py [--json] [--budget SECONDS] [--only TEXT]

(with parpy importable: installed, or PYTHONPATH=. from the repository root)

Each target times two calls on the same inputs (workloads.py): parpy's and the
one it is compared with. After a warm-up run of each, their runs alternate
(A B, B A, A B, ...) for about --budget seconds, at least 7 rounds, and the
ratio is the median over the rounds of other's time / parpy's time: how many
times faster parpy is. A cold target sleeps before each call and times calls
one at a time: each comes after the process was idle, its code and data out of
the caches. Parallel speedups need idle cores: the last column says how many
CPUs other processes used meanwhile (from /proc/stat), and a target measured
while they did is marked "noisy".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from bench_cfunc import cfunc_candidates, overhead_ns
from bench_crawl import crawl_candidates
from bench_dask import dask_candidates
from bench_divide import divide_candidates
from bench_pipeline import pipeline_candidates
from bench_queue import queue_candidates
from workloads import (
    BALANCED,
    ITERATIVE,
    SKEWED,
    TINY,
    WORKERS,
    candidates,
    decimal_candidates,
    gmpy2,
    links_candidates,
    pool_candidates,
)

import parpy
from parpy.comparison import measure
from parpy.comparison._measure import OtherCpu, Reading

MIN_ROUNDS, MAX_ROUNDS = 7, 51
# Not a ratio: parpy's cost per item of a C function over a buffer (bench_cfunc.overhead_ns).
OVERHEAD_LABEL = "C fn over a buffer: cost per item (no-op)"
MIN_SAMPLE = 0.01  # seconds: quicker calls are timed this many at a time


class Target(NamedTuple):
    label: str
    workload: dict[str, Callable[[], object]]
    parpy: str  # the names of the two calls in the workload
    other: str
    goal: float  # the least acceptable other / parpy
    goal_text: str
    min_rounds: int = MIN_ROUNDS
    idle: float = 0.0  # seconds asleep before each call (outside the timing): a cold call


def targets() -> list[Target]:
    balanced, skewed = candidates(BALANCED), candidates(SKEWED)
    iterative, tiny = candidates(ITERATIVE, "iterative"), candidates(TINY)
    kernel_map = pool_candidates("map-kernel")
    decimal, links = decimal_candidates(), links_candidates()
    queues = queue_candidates()
    native, pyfib = pipeline_candidates("native"), pipeline_candidates("python-fib")
    decimal_pipe = pipeline_candidates("fib-decimal")
    crawls = crawl_candidates()  # (the site starts at the first crawl)
    dask_tiny, dask_balanced = dask_candidates("tiny"), dask_candidates("balanced")
    dask_threads = dask_candidates("threads")  # (the clusters start at the first call)
    trivial, one_us = cfunc_candidates("trivial"), cfunc_candidates("1us")
    split_fib, split_decimal = divide_candidates("fib"), divide_candidates("decimal")
    # 10x the input against the 1x input: the ratio of per-MiB times
    ten = links_candidates(10)["parpy.extract_links"]
    one = links["parpy.extract_links"]
    links10 = {"10 MiB once": ten, "1 MiB ten times": lambda: [one() for _ in range(10)]}
    w = WORKERS
    return [
        Target(f"balanced, workers={w} vs workers=1", balanced, "parpy", "parpy-serial",
               1.85, ">= 1.85x"),
        Target(f"skewed, workers={w} vs workers=1", skewed, "parpy", "parpy-serial",
               1.8, ">= 1.8x"),
        Target("balanced, workers=1 vs gmpy2.fib loop", balanced, "parpy-serial",
               "gmpy2.fib-loop", 1 / 1.1, "within 10%"),
        Target(f"balanced, workers={w} vs gmpy2.fib loop", balanced, "parpy",
               "gmpy2.fib-loop", 1.8, ">= 1.8x"),
        Target(f"iterative, workers={w} vs Pool({w}).map", iterative, "parpy",
               "multiprocessing", 4.0, ">= 4x"),
        Target("100 tiny n, fib_batch vs parpy.fib loop", tiny, "parpy", "parpy.fib-loop",
               1.0, "not slower"),
        Target("  ... each call after 30 ms idle", tiny, "parpy", "parpy.fib-loop", 1.0,
               "not slower", MAX_ROUNDS, idle=0.03),
        Target(f"200k tiny n: Pool({w}).map(fib) vs mp.Pool({w})", kernel_map, "parpy.Pool",
               "multiprocessing.Pool", 10.0, ">= 10x"),
        Target("  ... vs mp.Pool.map, chunksize=1", kernel_map, "parpy.Pool",
               "multiprocessing.Pool-chunksize-1", 200.0, ">= 200x", 3),
        Target("  ... vs serial loop of the reference", kernel_map, "parpy.Pool",
               "serial-reference", 15.0, ">= 15x"),
        Target(f"Python fn, Pool({w}).map vs ThreadPool({w}).map", pool_candidates("map-python"),
               "parpy.Pool", "ThreadPool", 1 / 1.1, "<= 1.1x"),
        Target(f"Python fn, Pool({w}).imap vs ThreadPool({w})", pool_candidates("imap-python"),
               "parpy.Pool", "ThreadPool", 1 / 1.1, "<= 1.1x"),
        Target("executor.submit(fib) per task vs stdlib's", pool_candidates("submit-kernel"),
               "parpy.ThreadPoolExecutor", "ThreadPoolExecutor", 1.0, "no more"),
        Target("to_decimal(F(10**6)) vs str()", decimal, "parpy.to_decimal", "str",
               20.0, ">= 20x", 3),
        Target("to_decimal(F(10**6)) vs gmpy2 digits()", decimal, "parpy.to_decimal",
               "gmpy2.digits", 1 / 1.25, "within 1.25x"),
        Target("extract_links, 1 MiB vs html.parser", links, "parpy.extract_links",
               "html.parser", 30.0, ">= 30x", 3),
        Target("  ... vs its pure-Python twin", links, "parpy.extract_links",
               "reference.extract_links", 30.0, ">= 30x", 3),
        Target("  ... vs selectolax (lexbor)", links, "parpy.extract_links", "selectolax",
               2.0, ">= 2x"),
        Target("  10x the input vs 10 times the input", links10, "10 MiB once",
               "1 MiB ten times", 0.8, ">= 0.8x (linear)", 3),
        Target("Queue(64), producer -> consumer thread", queues, "parpy.Queue(64)",
               "queue.Queue(64)", 5.0, ">= 5x", 3),
        Target("Pipeline fib_mod.bind x2, native vs threading", native, "native", "threading",
               10.0, ">= 10x", 3),
        Target("Pipeline Python -> fib -> Python, 2 vs 1", pyfib, "native-2", "native-1",
               1.8, ">= 1.8x"),
        Target("  ... native vs multiprocessing backend", pyfib, "native-2",
               "multiprocessing-2", 1.0, "faster"),
        Target("Pipeline fib -> to_decimal vs str() loop", decimal_pipe, "native", "str-loop",
               20.0, ">= 20x", 3),
        Target("crawl 200 pages x 20 ms, workers=16 vs 1", crawls, "parpy-16", "parpy-1",
               8.0, ">= 8x", 3),
        Target("  ... vs reference crawl, 16 threads", crawls, "parpy-16", "reference-16",
               1.0, "not slower"),
        Target("C fn x*x+1, 10**7 floats: vs Numba prange", trivial, "parpy", "numba-prange",
               1 / 1.5, "within 1.5x"),
        Target("  ... 5*10**4: vs ThreadPoolExecutor+ctypes", trivial, "parpy-small",
               "thread-pool", 50.0, ">= 50x"),
        Target("  ... vs multiprocessing.Pool.map", trivial, "parpy-small", "multiprocessing",
               20.0, ">= 20x"),
        Target(f"C fn of ~1 us, workers={w} vs workers=1", one_us, "parpy-2", "parpy-1", 1.85,
               ">= 1.85x"),
        Target("F(10**8), workers=2 vs gmpy2.fib", split_fib, "parpy-2", "gmpy2.fib", 1.4,
               ">= 1.4x"),
        Target("  ... workers=2 vs workers=1", split_fib, "parpy-2", "parpy-1", 1.5, ">= 1.5x"),
        Target("  ... workers=1 vs gmpy2.fib", split_fib, "parpy-1", "gmpy2.fib", 1 / 1.25,
               "within 1.25x"),
        Target("F(2*10**6), workers=None vs workers=1", divide_candidates("small"), "parpy-None",
               "parpy-1", 1 / 1.05, "not slower"),
        Target("to_decimal(F(10**7)), workers=2 vs gmpy2", split_decimal, "parpy-2",
               "gmpy2.digits", 1.6, ">= 1.6x"),
        Target("  ... workers=2 vs workers=1", split_decimal, "parpy-2", "parpy-1", 1.3,
               ">= 1.3x"),
        Target("Dask 2x1, 10k tiny n: map vs a task each", dask_tiny, "parpy", "dask",
               20.0, ">= 20x", 3),
        Target("Dask 2x1 vs local workers=2, ~2 s iterative", dask_balanced, "dask-2x1",
               "local-2", 1 / 1.3, "within 1.3x"),
        Target("  ... Dask 1 worker x 2 threads vs 1 x 1", dask_threads, "dask-1x2",
               "dask-1x1", 1.8, ">= 1.8x"),
    ]  # fmt: skip


def measure_ratio(target: Target, budget: float) -> dict[str, Any]:
    """Time the target's two calls interleaved; return the ratio and how it was measured."""
    calls = {"parpy": target.workload[target.parpy], "other": target.workload[target.other]}
    warm = measure(calls, 1)  # also the cost of one call of each, to size the runs
    one_call = warm["parpy"][0] + warm["other"][0]
    number = math.ceil(MIN_SAMPLE / min(warm["parpy"][0], warm["other"][0]))

    def idle(_: object = None) -> None:
        time.sleep(target.idle)

    if target.idle:  # one call a run, each after a sleep
        number = 1
        one_call += 2 * target.idle
        idle()
    rounds = int(budget / (one_call * number)) | 1  # odd: the median is a run
    rounds = min(max(rounds, target.min_rounds), MAX_ROUNDS)
    start, t0 = cpu_seconds(), time.perf_counter()
    times = measure(calls, rounds, number=number, after=idle if target.idle else None)
    others = others_busy(start, time.perf_counter() - t0)
    ratio = statistics.median(o / p for o, p in zip(times["other"], times["parpy"], strict=True))
    return {
        "target": target.label,
        "parpy": target.parpy,
        "other": target.other,
        "parpy_seconds": statistics.median(times["parpy"]),
        "other_seconds": statistics.median(times["other"]),
        "ratio": ratio,
        "goal": target.goal,
        "ok": ratio >= target.goal,
        "rounds": rounds,
        "calls_per_run": number,
        "others_busy_cpus": others,  # CPUs that other processes used meanwhile
    }


def cpu_seconds() -> tuple[OtherCpu, Reading] | None:
    """Start counting the CPU that other processes use (compare's own meter:
    this process and its descendants are not others); None without /proc/stat."""
    meter = OtherCpu()
    reading = meter.read()
    return None if reading is None else (meter, reading)


def others_busy(start: tuple[OtherCpu, Reading] | None, wall: float) -> float | None:
    """Return how many CPUs other processes kept busy since ``start = cpu_seconds()``."""
    end = start[0].read() if start is not None else None
    if start is None or end is None:
        return None
    return max(0.0, start[0].cores(start[1], end))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--budget", type=float, default=6.0, help="seconds of timed runs per target (default: 6)"
    )
    parser.add_argument(
        "--only", default="", help="the targets whose label contains this (and their '...' rows)"
    )
    args = parser.parse_args()

    cpus = len(os.sched_getaffinity(0))
    machine = {
        "cpus": cpus,
        "gmp": parpy.gmp_version,
        "gmpy2": None if gmpy2 is None else gmpy2.version(),
        "python": sys.version.split()[0],
    }

    results = []
    if not args.json:
        print(f"{'target':<44} | {'ratio':>8} | {'goal':<10} | ok     | others' load")
    keep = False
    for target in targets():
        # a "  ..." row is measured with the row it continues
        if not target.label.startswith("  ..."):
            keep = args.only.lower() in target.label.lower()
        if not (keep or args.only.lower() in target.label.lower()):
            continue
        if target.other not in target.workload or target.parpy not in target.workload:
            # only the optional libraries' workloads lack a call: gmpy2, Dask
            results.append({"target": target.label, "skipped": "a library it needs is missing"})
        else:
            results.append(measure_ratio(target, args.budget))
        if not args.json:
            print(_row(results[-1], target.goal_text), flush=True)

    if args.only.lower() in OVERHEAD_LABEL.lower():
        ns = overhead_ns()
        results.append({"target": OVERHEAD_LABEL, "ns_per_item": round(ns, 3), "ok": ns < 5.0})
        if not args.json:
            ok = "ok" if ns < 5.0 else "MISSED"
            print(f"{OVERHEAD_LABEL:<44} | {ns:>5.2f} ns | {'< 5 ns':<10} | {ok:<6} |", flush=True)

    if args.json:
        print(json.dumps({"machine": machine, "targets": results}, indent=2))
    else:
        print(
            f"({cpus} CPUs, GMP {machine['gmp']}, gmpy2 {machine['gmpy2']}, "
            f"Python {machine['python']}; ratio = other's median time / parpy's)"
        )
    return 0


def _row(result: dict[str, Any], goal: str) -> str:
    if "skipped" in result:
        return f"{result['target']:<44} | {'-':>8} | {goal:<10} | skipped: {result['skipped']}"
    ok = "ok" if result["ok"] else "MISSED"
    busy = result["others_busy_cpus"]
    load = "?" if busy is None else f"{busy:.2f} CPUs" + (" (noisy)" if busy > 0.1 else "")
    return f"{result['target']:<44} | {result['ratio']:>7.2f}x | {goal:<10} | {ok:<6} | {load}"


if __name__ == "__main__":
    sys.exit(main())

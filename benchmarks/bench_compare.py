"""parpy.compare measures what it says: its times against the same calls timed
directly, and the wall time of ``python -m parpy compare``.

    python benchmarks/bench_compare.py [--json] [--blocks N]
    python -m pytest benchmarks/bench_compare.py --benchmark-only

(with parpy importable: installed, or PYTHONPATH=. from the repository root)

Two checks:

- For every backend, the median time that ``parpy.compare`` reports for one
  batch (fib_iterative over ITEMS, on WORKERS workers) against the median of
  the same call timed directly: the twin in a loop, ``thread_map``, a
  ``multiprocessing.Pool.map``, the executors' ``map``, ``parpy.map`` and
  ``parpy.Pool.map``, on pools made once. Goal: within 5% either way. The
  two are timed in alternating blocks (a compare() call, then as many
  direct rounds, interleaved over the backends as compare() does), so that
  drift on the machine falls on both.
- The wall time of ``python -m parpy compare`` with its defaults, start-up
  included. Goal: under 30 s on 2 cores.

The script prints a table like benchmarks/ratios.py's, with how many CPUs
other processes kept busy meanwhile (a figure measured while they did is
marked "noisy"). The pytest-benchmark form times each direct call and
records compare()'s median beside it (``extra_info``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from ratios import cpu_seconds, others_busy

import parpy
from parpy import comparison, reference

WORKERS = 2
ITEMS = comparison.make_ns(100, 2_000, 25_000, seed=7)
TOLERANCE = 0.05
DEFAULT_GOAL = 30.0  # seconds for `python -m parpy compare`
REPEAT = 5  # timed runs per compare() call and per block of direct rounds


def direct_calls(stack: ExitStack) -> dict[str, Callable[[], object]]:
    """The calls that compare() makes for fib_iterative over ITEMS on WORKERS
    workers, written out directly; their pools are made once (closed by ``stack``)."""
    twin, kernel, ns, w = reference.fib_iterative, parpy.fib_iterative, ITEMS, WORKERS
    context = multiprocessing.get_context(comparison.START_METHOD)
    pool = context.Pool(w)
    stack.callback(pool.join)
    stack.callback(pool.terminate)
    processes = stack.enter_context(ProcessPoolExecutor(w, mp_context=context))
    threads = stack.enter_context(ThreadPoolExecutor(w))
    native = parpy.Pool(w)
    stack.callback(native.join)
    stack.callback(native.terminate)
    chunksize = math.ceil(len(ns) / (4 * w))  # Pool.map's default, as compare() uses
    return {
        "serial": lambda: [twin(n) for n in ns],
        "threading": lambda: comparison.thread_map(twin, ns, w),
        "multiprocessing": lambda: pool.map(twin, ns),
        "process-pool": lambda: list(processes.map(twin, ns, chunksize=chunksize)),
        "thread-pool": lambda: list(threads.map(twin, ns)),
        "parpy": lambda: parpy.map(kernel, ns, workers=w),
        "parpy-pool": lambda: native.map(kernel, ns),
    }


def reported_times(report: parpy.Report) -> dict[str, list[float]]:
    return {t.backend: list(t.times) for t in report.timings}


def overhead(blocks: int = 5) -> list[dict[str, object]]:
    """compare()'s median against the direct median, per backend."""
    via_compare: dict[str, list[float]] = {}
    direct: dict[str, list[float]] = {}
    start, t0 = cpu_seconds(), time.perf_counter()
    with ExitStack() as stack:
        calls = direct_calls(stack)
        comparison.measure(calls, 1)  # warm-up, as compare() runs each once untimed
        for _ in range(blocks):
            report = parpy.compare(
                parpy.fib_iterative, ITEMS, workers=WORKERS, repeat=REPEAT, progress=False
            )
            for name, times in reported_times(report).items():
                via_compare.setdefault(name, []).extend(times)
            for name, times in comparison.measure(calls, REPEAT).items():
                direct.setdefault(name, []).extend(times)
    busy = others_busy(start, time.perf_counter() - t0)
    results = []
    for name in calls:
        ratio = statistics.median(via_compare[name]) / statistics.median(direct[name])
        results.append(
            {
                "target": f"compare() vs direct: {name} x{WORKERS if name != 'serial' else 1}",
                "compare_seconds": statistics.median(via_compare[name]),
                "direct_seconds": statistics.median(direct[name]),
                "ratio": ratio,
                "goal": f"within {TOLERANCE:.0%}",
                "ok": abs(ratio - 1) <= TOLERANCE,
                "runs": len(direct[name]),
                "others_busy_cpus": busy,
            }
        )
    return results


def default_wall() -> dict[str, object]:
    """The wall time of `python -m parpy compare`, interpreter start-up included."""
    start, t0 = cpu_seconds(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "parpy", "compare", "--no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )
    wall = time.perf_counter() - t0
    return {
        "target": "python -m parpy compare, wall time",
        "seconds": wall,
        "ratio": wall,
        "goal": f"< {DEFAULT_GOAL:.0f} s",
        "ok": wall < DEFAULT_GOAL,
        "cpus": len(os.sched_getaffinity(0)),
        "others_busy_cpus": others_busy(start, wall),
    }


def _row(result: dict[str, object]) -> str:
    busy = result["others_busy_cpus"]
    load = "?" if busy is None else f"{busy:.2f} CPUs" + (" (noisy)" if busy > 0.1 else "")
    value = result["ratio"]
    shown = f"{value:.1f} s" if "seconds" in result else f"{value:.3f}x"
    ok = "ok" if result["ok"] else "MISSED"
    return f"{result['target']:<44} | {shown:>8} | {result['goal']:<10} | {ok:<6} | {load}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument(
        "--blocks", type=int, default=5, help="compare() calls, alternating with direct rounds"
    )
    args = parser.parse_args()
    results = [*overhead(args.blocks), default_wall()]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'target':<44} | {'value':>8} | {'goal':<10} | ok     | others' load")
        for result in results:
            print(_row(result))
        print("(value: compare()'s median time / the direct call's; or seconds)")
    return 0


# ---- pytest-benchmark --------------------------------------------------------


@pytest.fixture(scope="module")
def compared() -> dict[str, list[float]]:
    report = parpy.compare(
        parpy.fib_iterative, ITEMS, workers=WORKERS, repeat=REPEAT, progress=False
    )
    return reported_times(report)


@pytest.fixture(scope="module")
def calls():
    with ExitStack() as stack:
        yield direct_calls(stack)


@pytest.mark.parametrize(
    "name", [b for b in comparison.BACKENDS if b not in comparison.DASK_BACKENDS]
)
def bench_compare_vs_direct(benchmark, compared, calls, name):
    benchmark.group = "compare() vs direct"
    benchmark.extra_info["compare_median"] = statistics.median(compared[name])
    benchmark.pedantic(calls[name], rounds=REPEAT, warmup_rounds=1)
    benchmark.extra_info["ratio"] = (
        benchmark.extra_info["compare_median"] / benchmark.stats.stats.median
    )


if __name__ == "__main__":
    sys.exit(main())

"""parpy batches on a Dask cluster (``client=``), against Dask alone and parpy.map.

    python -m pytest benchmarks/bench_dask.py --benchmark-only
    python benchmarks/bench_dask.py [--rounds N]   # the ratios, runs interleaved

``dask_candidates(name)`` (in the shape of workloads.py's candidates) gives
the calls of each comparison, every result checked:

- "tiny": 10,000 n in [0, 93] through ``parpy.map(parpy.fib, ns, client=c)``
  ("parpy") against ``c.gather(c.map(parpy.reference.fib, ns, pure=False))``
  ("dask"), a task per item, on a LocalCluster of 2 workers x 1 thread
  (goal: >= 20x).
- "balanced": about 2 s of ``fib_iterative`` on one core (n in [20000,
  30000]) on the same cluster ("dask-2x1") against the local
  ``parpy.map(..., workers=2)`` ("local-2") (goal: within 1.3x).
- "threads": the same batch on a LocalCluster of 1 worker x 2 threads
  ("dask-1x2") against 1 worker x 1 thread ("dask-1x1") (goal: >= 1.8x):
  the chunks run with the GIL released, so one worker's threads add up.

The clusters (worker processes on 127.0.0.1) start at the first call that
needs them, and close when a call needs clusters of other shapes, or at exit:
never at import, since Dask's spawned worker processes import a script's
main module again; and no idle cluster runs beside another's measurement.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib.util
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import parpy
import parpy.reference
from parpy.comparison import make_ns, measure

TINY = make_ns(10_000, 0, 93, seed=21)
# About 2 s on one core (fib_iterative(25000) takes about 1.2 ms).
BALANCED = make_ns(1700, 20_000, 30_000, seed=22)


_CLIENTS: dict[tuple[int, int], Any] = {}


def client(workers: int, threads: int, *beside: tuple[int, int]) -> Any:
    """A Client of a LocalCluster of ``workers`` processes x ``threads`` threads.

    The clusters of other shapes than these and ``beside`` close first: an
    idle cluster's processes (heartbeats, the scheduler's ticks) would
    otherwise run beside every measurement after its own.
    """
    for shape in set(_CLIENTS) - {(workers, threads), *beside}:
        started = _CLIENTS.pop(shape)
        cluster = started.cluster
        started.close()
        cluster.close()
    if (workers, threads) in _CLIENTS:
        return _CLIENTS[workers, threads]
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    started = distributed.Client(cluster)
    started.wait_for_workers(workers, timeout=120)
    atexit.register(cluster.close)
    atexit.register(started.close)
    _CLIENTS[workers, threads] = started
    return started


def _tasks_held(dask_scheduler: Any) -> int:
    return len(dask_scheduler.tasks)


def settle(*_: object) -> None:
    """Waits until the clusters hold no task: Dask takes a while (up to 0.2 s) to
    release the 10,000 tasks of the task-per-item run, and the run after it would
    pay for that."""
    deadline = time.monotonic() + 60
    for started in _CLIENTS.values():
        while started.run_on_scheduler(_tasks_held) and time.monotonic() < deadline:
            time.sleep(0.01)


def _checked(call: Callable[[], list[int]], want: list[int]) -> Callable[[], list[int]]:
    def checked() -> list[int]:
        got = call()
        assert got == want
        return got

    return checked


def _task_per_item(ns: list[int]) -> list[int]:
    c = client(2, 1)
    return c.gather(c.map(parpy.reference.fib, ns, pure=False))  # type: ignore[no-any-return]


@functools.cache
def dask_candidates(name: str) -> dict[str, Callable[[], list[int]]]:
    """The calls of one comparison, by name (the clusters start at the first call);
    none where Dask's distributed scheduler is not installed."""
    if importlib.util.find_spec("distributed") is None:
        return {}
    fib, fib_iterative = parpy.fib, parpy.fib_iterative
    if name == "tiny":
        want = parpy.map(fib, TINY)
        return {
            "parpy": _checked(lambda: parpy.map(fib, TINY, client=client(2, 1)), want),
            "dask": _checked(lambda: _task_per_item(TINY), want),
        }
    want = parpy.map(fib_iterative, BALANCED)
    if name == "balanced":
        return {
            "dask-2x1": _checked(
                lambda: parpy.map(fib_iterative, BALANCED, client=client(2, 1)), want
            ),
            "local-2": _checked(lambda: parpy.map(fib_iterative, BALANCED, workers=2), want),
        }
    if name == "threads":
        return {
            f"dask-1x{threads}": _checked(
                lambda threads=threads: parpy.map(
                    fib_iterative, BALANCED, client=client(1, threads, (1, 3 - threads))
                ),
                want,
            )
            for threads in (2, 1)
        }
    raise ValueError(name)


# The comparisons of main(): (workload, parpy's call, the other, goal as other / parpy).
TARGETS = [
    ("tiny", "parpy", "dask", 20.0, ">= 20x"),
    ("balanced", "dask-2x1", "local-2", 1 / 1.3, "within 1.3x"),
    ("threads", "dask-1x2", "dask-1x1", 1.8, ">= 1.8x"),
]


@pytest.mark.parametrize("call", ["parpy", "dask"])
def bench_tiny(benchmark, call):
    pytest.importorskip("distributed")
    benchmark.group = f"dask: {len(TINY)} tiny n, LocalCluster 2 workers x 1 thread"
    benchmark.pedantic(dask_candidates("tiny")[call], setup=settle, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("call", ["dask-2x1", "local-2"])
def bench_balanced(benchmark, call):
    pytest.importorskip("distributed")
    benchmark.group = f"dask: about 2 s of fib_iterative ({len(BALANCED)} n), 2 workers"
    benchmark.pedantic(dask_candidates("balanced")[call], rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("call", ["dask-1x2", "dask-1x1"])
def bench_threads(benchmark, call):
    pytest.importorskip("distributed")
    benchmark.group = "dask: the same batch, 1 worker x 2 threads vs 1 x 1"
    benchmark.pedantic(dask_candidates("threads")[call], rounds=5, warmup_rounds=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved runs of each call")
    args = parser.parse_args()
    print(f"{'comparison':<32} | {'parpy s':>8} | {'other s':>8} | {'ratio':>7} | goal")
    if not dask_candidates("tiny"):
        print("Dask's distributed scheduler is not installed: pip install 'parpy[dask]'")
        return 1
    for name, mine, other, goal, goal_text in TARGETS:
        calls = dask_candidates(name)
        pair = {mine: calls[mine], other: calls[other]}
        measure(pair, 1, after=settle)  # warm-up: the clusters start, the workers import parpy
        # the task-per-item baseline takes about 20 s a run: 3 rounds
        rounds = min(args.rounds, 3) if name == "tiny" else args.rounds
        times = measure(pair, rounds, after=settle)
        ratio = statistics.median(o / p for o, p in zip(times[other], times[mine], strict=True))
        ok = "ok" if ratio >= goal else "MISSED"
        print(
            f"{name + ': ' + mine + ' vs ' + other:<32} | {statistics.median(times[mine]):8.3f} | "
            f"{statistics.median(times[other]):8.3f} | {ratio:6.2f}x | {goal_text} {ok} "
            f"(load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""parpy.Queue against queue.Queue, with queue.SimpleQueue as the reference point.

    python -m pytest benchmarks --benchmark-only

One producer thread and one consumer thread pass 200,000 small ints through
a queue of maxsize 64 (SimpleQueue is unbounded): the cost of a hand-off
between two Python threads, which is what a pipeline of threads pays per item.
``throughput(factory, n)`` is the timed run itself, for benchmarks/ratios.py.
The goal: parpy.Queue(64) moves items at least 5x as fast as queue.Queue(64).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import pytest

import parpy

N_ITEMS = 200_000
MAXSIZE = 64
GOAL = 5.0  # queue.Queue(64)'s time / parpy.Queue(64)'s


def _parpy_queue():
    return parpy.Queue(MAXSIZE)


QUEUES: dict[str, Callable[[], object]] = {
    "parpy.Queue(64)": _parpy_queue,
    "queue.Queue(64)": lambda: queue.Queue(MAXSIZE),
    "queue.SimpleQueue()": queue.SimpleQueue,
}


def throughput(factory: Callable[[], object], n: int = N_ITEMS) -> float:
    """Returns the seconds that a producer thread and a consumer thread take to
    pass the ints 0 .. n-1 through ``factory()``, from the start of both
    threads until both have ended. Fails if the consumer got other items."""
    q = factory()
    last = []

    def produce():
        put = q.put
        for i in range(n):
            put(i)

    def consume():
        get = q.get
        item = None
        for _ in range(n):
            item = get()
        last.append(item)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    elapsed = time.perf_counter() - start
    assert not any(thread.is_alive() for thread in threads), "the hand-off did not finish"
    assert last == [n - 1], last
    return elapsed


def queue_candidates(n: int = N_ITEMS) -> dict[str, Callable[[], float]]:
    """The timed calls by name, in the shape of workloads.py's candidates."""
    return {
        name: (lambda factory=factory: throughput(factory, n)) for name, factory in QUEUES.items()
    }


@pytest.mark.parametrize("name", list(QUEUES))
def bench_queue(benchmark, name):
    benchmark.group = f"queue: {N_ITEMS:,} ints, one producer and one consumer thread"
    benchmark.pedantic(throughput, args=(QUEUES[name], N_ITEMS), rounds=5, warmup_rounds=1)

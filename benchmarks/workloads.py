"""The inputs of parpy's benchmarks, shared by the bench_*.py suites and ratios.py.

Fixed seeds, so that every run and every machine times the same batches.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence

import parpy
from parpy.comparison import make_ns, thread_map

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


def _process_map(func: Callable[[int], int], ns: Sequence[int], workers: int) -> list[int]:
    """``multiprocessing.Pool(workers).map(func, ns)``, the pool made for this call."""
    with multiprocessing.Pool(workers) as pool:
        return pool.map(func, ns)


def runners(algorithm: str, ns: Sequence[int], workers: int) -> dict[str, Callable[[], object]]:
    """The calls that compute ``[F(n) for n in ns]`` with ``algorithm``, by backend: the
    kernel's pure-Python twin in a loop ("serial"), on ``workers`` threading.Threads and
    through a ``multiprocessing.Pool(workers)`` made for the call; parpy.fib_batch on
    one worker ("parpy-serial") and on ``workers``."""
    ns = list(ns)
    kernel = parpy.batch.ALGORITHMS[algorithm]
    twin = getattr(parpy.reference, kernel.__name__)
    return {
        "serial": lambda: [twin(n) for n in ns],
        "threading": lambda: thread_map(twin, ns, workers),
        "multiprocessing": lambda: _process_map(twin, ns, workers),
        "parpy-serial": lambda: parpy.fib_batch(ns, workers=1, algorithm=algorithm),
        "parpy": lambda: parpy.fib_batch(ns, workers=workers, algorithm=algorithm),
    }


def candidates(ns: list[int], algorithm: str = "doubling") -> dict[str, Callable[[], object]]:
    """Return the calls that compute ``[F(n) for n in ns]`` with ``algorithm``, by name.

    The backends of :func:`runners` on ``WORKERS`` workers and, for
    fast doubling, loops over ``parpy.fib`` and (when installed) ``gmpy2.fib``.
    """
    calls: dict[str, Callable[[], object]] = dict(runners(algorithm, ns, WORKERS))
    if algorithm == "doubling":
        calls["parpy.fib-loop"] = lambda: [parpy.fib(n) for n in ns]
        if gmpy2 is not None:
            calls["gmpy2.fib-loop"] = lambda: [gmpy2.fib(n) for n in ns]
    return calls


# ---- pools and executors ---------------------------------------------------------

# Pool.map of tiny items: the cost is turning Python ints into C values and back.
POOL_TINY = make_ns(200_000, 0, 93, seed=5)
# Python callables and single submits: per-task overhead.
TASKS = make_ns(20_000, 0, 93, seed=6)

_pools: dict[str, object] = {}


def _pool(name: str):
    """The long-lived pools the pool workloads run on, made on first use."""
    if name not in _pools:
        import atexit
        import concurrent.futures
        import multiprocessing
        import multiprocessing.pool

        make = {
            "parpy.Pool": lambda: parpy.Pool(WORKERS),
            "multiprocessing.Pool": lambda: multiprocessing.Pool(WORKERS),
            "ThreadPool": lambda: multiprocessing.pool.ThreadPool(WORKERS),
            "parpy.ThreadPoolExecutor": lambda: parpy.ThreadPoolExecutor(WORKERS),
            "ThreadPoolExecutor": lambda: concurrent.futures.ThreadPoolExecutor(WORKERS),
        }[name]
        pool = _pools[name] = make()
        atexit.register(pool.terminate if hasattr(pool, "terminate") else pool.shutdown)
    return _pools[name]


def _submit_all(executor, fn, ns) -> list[int]:
    futures = [executor.submit(fn, n) for n in ns]
    return [f.result() for f in futures]


def pool_candidates(workload: str) -> dict[str, Callable[[], object]]:
    """Return the calls compared for a pool workload, by name.

    "map-kernel": POOL_TINY through parpy.Pool.map(parpy.fib), the reference
    fib through multiprocessing.Pool.map (default chunksize and chunksize=1)
    and a serial loop of it. "map-python" and "imap-python": the reference fib
    over TASKS through parpy.Pool and multiprocessing.pool.ThreadPool.
    "submit-kernel": parpy.fib submitted per item of TASKS to parpy's and the
    stdlib's ThreadPoolExecutor, all results collected.
    """
    ref = parpy.reference.fib
    if workload == "map-kernel":
        ns = POOL_TINY
        return {
            "parpy.Pool": lambda: _pool("parpy.Pool").map(parpy.fib, ns),
            "multiprocessing.Pool": lambda: _pool("multiprocessing.Pool").map(ref, ns),
            "multiprocessing.Pool-chunksize-1": lambda: _pool("multiprocessing.Pool").map(
                ref, ns, chunksize=1
            ),
            "serial-reference": lambda: [ref(n) for n in ns],
        }
    if workload == "map-python":
        return {
            "parpy.Pool": lambda: _pool("parpy.Pool").map(ref, TASKS),
            "ThreadPool": lambda: _pool("ThreadPool").map(ref, TASKS),
        }
    if workload == "imap-python":
        return {
            "parpy.Pool": lambda: list(_pool("parpy.Pool").imap(ref, TASKS)),
            "ThreadPool": lambda: list(_pool("ThreadPool").imap(ref, TASKS)),
        }
    if workload == "submit-kernel":
        return {
            "parpy.ThreadPoolExecutor": lambda: _submit_all(
                _pool("parpy.ThreadPoolExecutor"), parpy.fib, TASKS
            ),
            "ThreadPoolExecutor": lambda: _submit_all(
                _pool("ThreadPoolExecutor"), parpy.fib, TASKS
            ),
        }
    raise ValueError(workload)


POOL_WORKLOADS = ("map-kernel", "map-python", "imap-python", "submit-kernel")


# ---- text kernels ---------------------------------------------------------------

DECIMAL_N = 10**6  # F(10**6) has 208,988 decimal digits


def _str_unlimited(x: int) -> str:
    """str(x) with sys.int_max_str_digits lifted, as a user would have to."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(x)
    finally:
        sys.set_int_max_str_digits(old)


def decimal_candidates() -> dict[str, Callable[[], object]]:
    """The decimal digits of F(DECIMAL_N): parpy.to_decimal, str(), its
    pure-Python twin and (when installed) gmpy2's mpz.digits()."""
    x = parpy.fib(DECIMAL_N)
    calls: dict[str, Callable[[], object]] = {
        "parpy.to_decimal": lambda: parpy.to_decimal(x),
        "str": lambda: _str_unlimited(x),
        "reference.to_decimal": lambda: parpy.reference.to_decimal(x),
    }
    if gmpy2 is not None:
        m = gmpy2.mpz(x)
        calls["gmpy2.digits"] = m.digits
    return calls


def links_candidates(copies: int = 1) -> dict[str, Callable[[], object]]:
    """The links of about a MiB of real pages (html_corpus.py, times copies):
    parpy.extract_links, its pure-Python twin, an html.parser crawler and
    selectolax (lexbor)."""
    from bench_links import html_parser_links, lexbor_links
    from html_corpus import corpus

    doc = corpus(copies)
    return {
        "parpy.extract_links": lambda: parpy.extract_links(doc),
        "reference.extract_links": lambda: parpy.reference.extract_links(doc),
        "html.parser": lambda: html_parser_links(doc),
        "selectolax": lambda: lexbor_links(doc),
    }

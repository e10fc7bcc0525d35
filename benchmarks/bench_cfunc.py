"""A user's own C function as a parpy kernel, against the other ways to run it in parallel.

    python -m pytest benchmarks/bench_cfunc.py --benchmark-only

The functions are tests/c/userfuncs.c, built here with the system's compiler:
``square_plus_one`` (x * x + 1.0, trivial), ``identity_f64`` (a no-op) and
``spin(x, rounds)`` (a dependent chain of ``rounds`` multiply-adds, bound to about
1 µs). ``cfunc_candidates(kind)`` gives the timed calls for benchmarks/ratios.py:

- "trivial": square_plus_one over 10**7 float64 in a NumPy array: parpy.map on 2 workers
  against a Numba ``@njit(parallel=True)`` prange loop calling the same ctypes function on 2
  threads; and, on the first 5 * 10**4 of them (a call per item takes microseconds), a
  ThreadPoolExecutor(2) calling the ctypes function per item and multiprocessing.Pool(2).map.
- "1us": spin bound to about 1 µs per call, 5 * 10**4 items: 2 workers against 1.

``overhead_ns()`` is parpy's cost per item over a buffer: the time of the no-op over 10**7
items on one worker less that of copying them (numpy.copyto), per item.
Goals: within 1.5x of Numba; at least 50x the thread pool and 20x multiprocessing; 2 workers
at least 1.85x one on the 1 µs function; under 5 ns per item.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import parpy

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "tests" / "c" / "userfuncs.c"
N_BIG = 10**7
N_PER_CALL = 5 * 10**4  # for the ways that make a call per item
WORKERS = 2

try:
    import numba
except ImportError:  # pragma: no cover - numba is in the bench extra
    numba = None


@functools.cache
def library() -> str:
    """The functions' shared library, built once per process (into a temporary folder)."""
    folder = Path(tempfile.mkdtemp(prefix="parpy-bench-userfuncs-"))
    atexit.register(shutil.rmtree, folder, True)
    target = folder / "libuserfuncs.so"
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"
    cmd = [shutil.which(cc) or cc, "-O2", "-shared", "-fPIC", str(SOURCE), "-o", str(target)]
    subprocess.run(cmd, check=True, timeout=120)
    return str(target)


@functools.cache
def _ctypes(name: str, argtypes: tuple, restype) -> Callable:
    fn = getattr(ctypes.CDLL(library()), name)
    fn.argtypes, fn.restype = list(argtypes), restype
    return fn


def square_ctypes() -> Callable[[float], float]:
    return _ctypes("square_plus_one", (ctypes.c_double,), ctypes.c_double)


def _square_in_worker(x: float) -> float:
    """What multiprocessing's workers run: the ctypes function, loaded once per worker."""
    return square_ctypes()(x)


@functools.cache
def spin_rounds(target_ns: float = 1000.0) -> int:
    """The rounds of ``spin`` that take about target_ns on this machine."""
    spin = parpy.Kernel.from_library(library(), "spin", "float64(float64, int64)")
    rounds = 1000
    x = np.ones(20_000)
    best = min(_timed(lambda: parpy.map(spin.bind(rounds), x, workers=1)) for _ in range(5))
    return max(1, round(rounds * target_ns / (best / len(x) * 1e9)))


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@functools.cache
def _numba_prange() -> Callable | None:
    if numba is None:
        return None
    fn = square_ctypes()

    @numba.njit(parallel=True, cache=False)
    def loop(x, out):
        for i in numba.prange(x.shape[0]):
            out[i] = fn(x[i])

    return loop


def cfunc_candidates(kind: str) -> dict[str, Callable[[], object]]:
    """Calls on the same inputs, each checked against the first's result once."""
    rng = np.random.default_rng(7)
    if kind == "trivial":
        k = parpy.Kernel.from_library(library(), "square_plus_one", "float64(float64)")
        x = rng.random(N_BIG)
        out = np.empty_like(x)
        small = x[:N_PER_CALL].tolist()
        calls: dict[str, Callable[[], object]] = {
            "parpy": lambda: parpy.map(k, x, workers=WORKERS, out=out),
            "parpy-small": lambda: parpy.map(k, x[:N_PER_CALL], workers=WORKERS),
            "thread-pool": lambda: _thread_pool(small),
            "multiprocessing": lambda: _process_pool(small),
        }
        loop = _numba_prange()
        if loop is not None:
            numba.set_num_threads(WORKERS)
            numba_out = np.empty_like(x)
            loop(x[:10], numba_out[:10])  # compiled here, not in the timing
            calls["numba-prange"] = lambda: loop(x, numba_out)
        expected = x * x + 1.0
        assert np.array_equal(calls["parpy"](), expected)
        if loop is not None:
            calls["numba-prange"]()
            assert np.array_equal(numba_out, expected)
        return calls
    if kind == "1us":
        spin = parpy.Kernel.from_library(library(), "spin", "float64(float64, int64)")
        bound = spin.bind(spin_rounds())
        x = np.ones(N_PER_CALL)
        return {
            "parpy-2": lambda: parpy.map(bound, x, workers=WORKERS),
            "parpy-1": lambda: parpy.map(bound, x, workers=1),
        }
    raise ValueError(kind)


_POOLS: dict[str, object] = {}


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        if isinstance(pool, ThreadPoolExecutor):
            pool.shutdown()
        else:
            pool.terminate()  # type: ignore[attr-defined]
            pool.join()  # type: ignore[attr-defined]


def _thread_pool(items: list[float]) -> list[float]:
    fn = square_ctypes()
    pool = _POOLS.get("threads")
    if pool is None:
        pool = _POOLS["threads"] = ThreadPoolExecutor(WORKERS)
    return list(pool.map(fn, items))  # type: ignore[attr-defined]


def _process_pool(items: list[float]) -> list[float]:
    pool = _POOLS.get("processes")
    if pool is None:
        context = multiprocessing.get_context("forkserver")
        pool = _POOLS["processes"] = context.Pool(WORKERS)
    return pool.map(_square_in_worker, items)  # type: ignore[attr-defined]


def overhead_ns(rounds: int = 9) -> float:
    """parpy's cost per item over a buffer, one worker: the no-op's time less a copy's."""
    k = parpy.Kernel.from_library(library(), "identity_f64", "float64(float64)")
    x = np.random.default_rng(3).random(N_BIG)
    out = np.empty_like(x)
    parpy.map(k, x, workers=1, out=out)
    differences = []
    for _ in range(rounds):
        noop = _timed(lambda: parpy.map(k, x, workers=1, out=out))
        copy = _timed(lambda: np.copyto(out, x))
        differences.append((noop - copy) / N_BIG * 1e9)
    return statistics.median(differences)


@pytest.mark.parametrize(
    "name", ["parpy", "numba-prange", "parpy-small", "thread-pool", "multiprocessing"]
)
def test_trivial_function(benchmark, name):
    calls = cfunc_candidates("trivial")
    if name not in calls:
        pytest.skip("numba is not installed (pip install 'parpy[bench]')")
    benchmark.pedantic(calls[name], rounds=3, iterations=1)


@pytest.mark.parametrize("name", ["parpy-2", "parpy-1"])
def test_one_microsecond_function(benchmark, name):
    benchmark.pedantic(cfunc_candidates("1us")[name], rounds=5, iterations=1)


if __name__ == "__main__":
    print(f"per-item overhead over a buffer: {overhead_ns():.2f} ns", file=sys.stderr)

"""parpy.Pipeline on its three backends, and against plain loops.

    python -m pytest benchmarks --benchmark-only

Three workloads, each a dict of calls on the same input
(``pipeline_candidates(name)``, also used by benchmarks/ratios.py):

- "native": two native stages, ``fib_mod.bind(M)`` twice with 2 workers
  each, over small n: the cost of the pipeline itself per item (goal: under
  1 us an item over 10**6 items, >= 10x backend="threading").
- "python-fib": Python (parse) -> fib, n in [10**5, 1.5 * 10**5] -> Python
  (write): a native stage between Python stages (goals: 2 workers on the
  fib stage >= 1.8x 1 worker; faster than backend="multiprocessing"; the
  fib stage is the bottleneck).
- "fib-decimal": fib -> to_decimal for n around 10**6 (goal: >= 20x
  ``[str(parpy.fib(n)) for n in ns]``).
- "fibonacci": the README's pipeline, parse -> fib (2 workers) ->
  to_decimal (2 workers) -> len, on each backend.

Pipelines are built once, outside the timed calls, as a user who runs one
repeatedly would: their threads (or processes) are kept between runs.
"""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable

import pytest

import parpy
from parpy import Pipeline, Stage

M = 10**9 + 7
NATIVE_N = 200_000  # items per call in the comparison with threading
FIB_RANGE = (10**5, 15 * 10**4)
FIB_ITEMS = 1000
DECIMAL_NS = [10**6 + i for i in range(6)]


def parse(text: str) -> int:
    return int(text)


def write(value: int) -> int:
    return value.bit_length()


def _str_loop(ns: list[int]) -> list[str]:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return [str(parpy.fib(n)) for n in ns]
    finally:
        sys.set_int_max_str_digits(old)


def _checked(
    pipe: Pipeline, items: list[object], want: list[object], bottleneck: str | None = None
) -> Callable[[], object]:
    def call() -> object:
        got = pipe.map(items)
        assert got == want
        if bottleneck is not None:
            assert pipe.stats().bottleneck == bottleneck, pipe.stats()
        return got

    return call


_PIPES: dict[str, Pipeline] = {}


def _pipe(key: str, stages: list[Stage], **options: object) -> Pipeline:
    """One pipeline per key for the whole process (closed at exit by the workers' owners)."""
    if key not in _PIPES:
        _PIPES[key] = Pipeline(stages, **options)  # type: ignore[arg-type]
    return _PIPES[key]


@functools.cache
def pipeline_candidates(name: str, n: int = NATIVE_N) -> dict[str, Callable[[], object]]:
    if name == "native":
        bound = parpy.fib_mod.bind(M)
        stages = [Stage(bound, 2), Stage(bound, 2)]
        ns = list(range(n))
        want = [bound(bound(x)) for x in ns]
        return {
            backend: _checked(_pipe(f"native-{backend}", stages, backend=backend), ns, want)  # type: ignore[arg-type]
            for backend in ("native", "threading")
        }
    if name == "python-fib":
        rng = random.Random(9)
        texts = [str(rng.randint(*FIB_RANGE)) for _ in range(FIB_ITEMS)]
        want = [parpy.fib(int(t)).bit_length() for t in texts]
        calls = {}
        for backend, workers in (("native", 2), ("native", 1), ("multiprocessing", 2)):
            stages = [Stage(parse), Stage(parpy.fib, workers), Stage(write)]
            pipe = _pipe(f"python-fib-{backend}-{workers}", stages, backend=backend)
            neck = "fib" if backend == "native" else None  # (processes: pickling dominates)
            calls[f"{backend}-{workers}"] = _checked(pipe, texts, want, neck)  # type: ignore[arg-type]
        return calls
    if name == "fib-decimal":
        want = _str_loop(DECIMAL_NS)
        pipe = _pipe("fib-decimal", [Stage(parpy.fib, 2), Stage(parpy.to_decimal, 2)])
        return {
            "native": _checked(pipe, DECIMAL_NS, want),  # type: ignore[arg-type]
            "str-loop": lambda: _str_loop(DECIMAL_NS),
        }
    if name == "fibonacci":  # the README's pipeline, on each backend
        texts = [str(n) for n in range(10**5, 10**5 + FIB_ITEMS // 2)]
        want = [len(parpy.to_decimal(parpy.fib(int(t)))) for t in texts]
        stages = [Stage(parse), Stage(parpy.fib, 2), Stage(parpy.to_decimal, 2), Stage(len)]
        return {
            backend: _checked(_pipe(f"fibonacci-{backend}", stages, backend=backend), texts, want)  # type: ignore[arg-type]
            for backend in ("native", "threading", "multiprocessing")
        }
    raise ValueError(name)


def bench_two_native_stages_a_million_items(benchmark):
    """The per-item figure: this time / 10**6 (goal: under 1 us)."""
    benchmark.group = "pipeline: fib_mod.bind(M) x2, 10**6 items"
    benchmark.pedantic(pipeline_candidates("native", 10**6)["native"], rounds=3)


@pytest.mark.parametrize("backend", ["native", "threading"])
def bench_two_native_stages(benchmark, backend):
    benchmark.group = f"pipeline: fib_mod.bind(M) x2, {NATIVE_N} items"
    benchmark(pipeline_candidates("native")[backend])


@pytest.mark.parametrize("call", ["native-2", "native-1", "multiprocessing-2"])
def bench_python_fib_python(benchmark, call):
    benchmark.group = f"pipeline: Python -> fib -> Python, {FIB_ITEMS} items"
    benchmark(pipeline_candidates("python-fib")[call])


@pytest.mark.parametrize("backend", ["native", "threading", "multiprocessing"])
def bench_fibonacci_pipeline(benchmark, backend):
    benchmark.group = "pipeline: parse -> fib x2 -> to_decimal x2 -> len, the three backends"
    benchmark(pipeline_candidates("fibonacci")[backend])


@pytest.mark.parametrize("call", ["native", "str-loop"])
def bench_fib_to_decimal(benchmark, call):
    benchmark.group = f"pipeline: fib -> to_decimal, n about 10**6, {len(DECIMAL_NS)} items"
    benchmark.pedantic(pipeline_candidates("fib-decimal")[call], rounds=3)

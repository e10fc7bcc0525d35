"""One Fibonacci batch on serial Python, threading, multiprocessing and parpy.

``compare()`` runs the batch on each backend, checks that every backend
returned the same results, and times them side by side: the runs of the
backends are interleaved, so that a noisy machine slows them all alike, and
each backend's time is the median of its runs. ``python -m parpy compare`` is
the command-line form.

The Python backends run the kernel's pure-Python twin from parpy.reference;
the parpy backends run the kernel itself with ``parpy.fib_batch``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, NamedTuple, TypeVar

from parpy import _batch, reference
from parpy._batch import fib_batch, get_num_threads

__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "DEFAULT_WORKLOADS",
    "MismatchError",
    "Report",
    "Row",
    "compare",
    "make_ns",
    "measure",
    "process_map",
    "reference_twin",
    "runners",
    "thread_map",
]

T = TypeVar("T")
R = TypeVar("R")

ALGORITHMS = tuple(_batch._ALGORITHMS)

# count, n_min, n_max per algorithm: about a second of serial Python each.
DEFAULT_WORKLOADS = {
    "iterative": (400, 2_000, 25_000),
    "doubling": (400, 100_000, 200_000),
    "recursive": (100, 20, 27),
}


class MismatchError(AssertionError):
    """Two backends returned different results for the same batch."""


# ---- inputs and twins --------------------------------------------------------


def make_ns(
    count: int, n_min: int, n_max: int, distribution: str = "uniform", seed: int = 0
) -> list[int]:
    """Return ``count`` values of n in ``[n_min, n_max]``, reproducibly from ``seed``.

    ``"uniform"`` draws n uniformly; ``"loguniform"`` draws log(n) uniformly,
    a batch whose item costs differ by orders of magnitude.
    """
    if not 0 <= n_min <= n_max:
        raise ValueError(f"need 0 <= n_min <= n_max, not n_min={n_min}, n_max={n_max}")
    rng = random.Random(seed)
    if distribution == "uniform":
        return [rng.randint(n_min, n_max) for _ in range(count)]
    if distribution == "loguniform":
        if n_min < 1:
            raise ValueError("a loguniform distribution needs n_min >= 1")
        lo, hi = math.log(n_min), math.log(n_max)
        return [min(max(round(math.exp(rng.uniform(lo, hi))), n_min), n_max) for _ in range(count)]
    raise ValueError(f"distribution must be 'uniform' or 'loguniform', not {distribution!r}")


def reference_twin(algorithm: str) -> Callable[[int], int]:
    """Return the pure-Python twin of the kernel that ``fib_batch`` runs for ``algorithm``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    twin: Callable[[int], int] = getattr(reference, _batch._ALGORITHMS[algorithm].__name__)
    return twin


# ---- the stdlib's ways to run a function over a batch ------------------------


def thread_map(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[func(x) for x in items]`` split over ``workers`` threading.Threads.

    Thread ``i`` takes items ``i, i + workers, ...``; the results come back in
    input order, and the first exception raised in a thread is re-raised.
    """
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []

    def work(start: int) -> None:
        try:
            results[start::workers] = [func(x) for x in items[start::workers]]
        except BaseException as exc:  # re-raised below, in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def process_map(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``multiprocessing.Pool(workers).map(func, items)``, the pool made for this call."""
    with multiprocessing.Pool(workers) as pool:
        return pool.map(func, items)


# ---- backends ----------------------------------------------------------------


class Backend(NamedTuple):
    """How one backend runs a batch: ``run(algorithm, ns, workers)``."""

    run: Callable[[str, list[int], int], list[int]]
    parallel: bool  # False: always one worker, whatever ``workers`` says

    def workers_for(self, workers: int) -> int:
        """Return the workers this backend runs on when asked for ``workers``."""
        return workers if self.parallel else 1


BACKENDS: dict[str, Backend] = {
    "serial": Backend(lambda alg, ns, w: [reference_twin(alg)(n) for n in ns], False),
    "threading": Backend(lambda alg, ns, w: thread_map(reference_twin(alg), ns, w), True),
    "multiprocessing": Backend(lambda alg, ns, w: process_map(reference_twin(alg), ns, w), True),
    "parpy-serial": Backend(lambda alg, ns, w: fib_batch(ns, workers=1, algorithm=alg), False),
    "parpy": Backend(lambda alg, ns, w: fib_batch(ns, workers=w, algorithm=alg), True),
}


def runners(
    algorithm: str, ns: Sequence[int], workers: int, backends: Iterable[str] = BACKENDS
) -> dict[str, Callable[[], list[int]]]:
    """Return, for each of ``backends``, a call that runs ``[F(n) for n in ns]`` on it."""
    ns = list(ns)
    return {
        name: partial(BACKENDS[name].run, algorithm, ns, BACKENDS[name].workers_for(workers))
        for name in backends
    }


# ---- timing ------------------------------------------------------------------


def measure(
    funcs: Mapping[str, Callable[[], object]], repeat: int, *, number: int = 1
) -> dict[str, list[float]]:
    """Time each function ``repeat`` times; return the seconds per call of each run.

    The runs are interleaved, one of each function per round, and the order
    rotates from round to round, so that drift and noise on the machine fall
    on every function alike. A run times ``number`` calls (for functions too
    quick to time one call at a time).
    """
    names = list(funcs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            func = funcs[name]
            start = time.perf_counter()
            for _ in range(number):
                func()
            times[name].append((time.perf_counter() - start) / number)
    return times


# ---- the report --------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    backend: str
    workers: int
    seconds: float  # median of the runs
    speedup: float  # the baseline's seconds / these seconds
    times: list[float]  # every run, in order


@dataclass(frozen=True)
class Report:
    algorithm: str
    count: int
    n_min: int
    n_max: int
    repeat: int
    baseline: str
    rows: list[Row]

    def __str__(self) -> str:
        lines = [
            f"F(n) for {self.count} values of n in [{self.n_min}, {self.n_max}], "
            f"algorithm {self.algorithm!r}",
            f"median of {self.repeat} runs; speedup over {self.baseline}",
            f"{'backend':<16}{'workers':>8}{'seconds':>11}{'speedup':>10}",
        ]
        for row in self.rows:
            lines.append(
                f"{row.backend:<16}{row.workers:>8}{row.seconds:>11.4f}{row.speedup:>9.2f}x"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- compare -----------------------------------------------------------------


def _check_same(results: Mapping[str, list[int]], ns: Sequence[int]) -> None:
    """Raise MismatchError unless every backend's results equal the first backend's."""
    (first, expected), *others = results.items()
    for name, got in others:
        if len(got) != len(expected):
            raise MismatchError(f"{name} returned {len(got)} results, {first} {len(expected)}")
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                raise MismatchError(f"{name} and {first} differ at items[{i}], n={ns[i]}")


def compare(
    algorithm: str = "iterative",
    ns: Sequence[int] | None = None,
    backends: str | Sequence[str] | None = None,
    workers: int | None = None,
    repeat: int = 5,
) -> Report:
    """Run ``[F(n) for n in ns]`` on each backend; return their times side by side.

    ``ns`` defaults to ``DEFAULT_WORKLOADS[algorithm]`` drawn by ``make_ns``;
    ``backends`` (names, or one comma-separated string of names) to all of
    ``BACKENDS``; ``workers`` (for the parallel
    backends) to ``parpy.get_num_threads()``. Each backend first runs once
    untimed, and every backend's results must equal the first one's, else
    ``MismatchError``. Then each runs ``repeat`` times, interleaved (see
    ``measure``). Speedups are over ``"serial"`` when it is among the
    backends, else over the first one.
    """
    reference_twin(algorithm)  # validates algorithm
    ns = list(make_ns(*DEFAULT_WORKLOADS[algorithm]) if ns is None else ns)
    if not ns:
        raise ValueError("ns is empty")
    if isinstance(backends, str):
        backends = [name.strip() for name in backends.split(",") if name.strip()]
    names = list(dict.fromkeys(BACKENDS if backends is None else backends))
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise ValueError(
            f"backends must be some of {', '.join(BACKENDS)}, not {', '.join(unknown) or 'none'}"
        )
    workers = get_num_threads() if workers is None else _batch._positive_int(workers, "workers")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, not {repeat}")

    runs = runners(algorithm, ns, workers, names)
    _check_same({name: run() for name, run in runs.items()}, ns)
    times = measure(runs, repeat)

    medians = {name: statistics.median(times[name]) for name in names}
    baseline = "serial" if "serial" in names else names[0]
    rows = [
        Row(
            name,
            BACKENDS[name].workers_for(workers),
            medians[name],
            medians[baseline] / medians[name],
            times[name],
        )
        for name in names
    ]
    return Report(algorithm, len(ns), min(ns), max(ns), repeat, baseline, rows)


# ---- command line: python -m parpy compare -----------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``python -m parpy compare`` to ``parser``."""
    workloads = "; ".join(
        f"{alg}: {count} in [{lo}, {hi}]" for alg, (count, lo, hi) in DEFAULT_WORKLOADS.items()
    )
    add = parser.add_argument
    add(
        "--algorithm",
        choices=ALGORITHMS,
        default="iterative",
        help="the kernel fib_batch runs, and its twin (default: %(default)s)",
    )
    add("--count", type=_positive, help="values of n in the batch")
    add("--n-min", type=int, help="smallest n")
    add("--n-max", type=int, help=f"largest n (the defaults, per algorithm: {workloads})")
    add(
        "--distribution",
        choices=("uniform", "loguniform"),
        default="uniform",
        help="how n is drawn from [n-min, n-max] (default: %(default)s)",
    )
    add("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    add(
        "--workers",
        type=_positive,
        help="workers of the parallel backends (default: parpy.get_num_threads())",
    )
    add(
        "--repeat",
        type=_positive,
        default=5,
        help="timed runs of each backend; the median is reported (default: %(default)s)",
    )
    add(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated backends to run (default: %(default)s)",
    )
    add("--json", action="store_true", help="print a JSON report instead of the table")
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``python -m parpy compare`` with parsed ``args``; return the exit status."""
    count, n_min, n_max = DEFAULT_WORKLOADS[args.algorithm]
    try:
        ns = make_ns(
            count if args.count is None else args.count,
            n_min if args.n_min is None else args.n_min,
            n_max if args.n_max is None else args.n_max,
            args.distribution,
            args.seed,
        )
        report = compare(args.algorithm, ns, args.backends, args.workers, args.repeat)
    except (ValueError, OverflowError) as exc:
        parser.error(str(exc))
    except MismatchError as exc:
        parser.exit(1, f"{parser.prog}: results differ: {exc}\n")
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0

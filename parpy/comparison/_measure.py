"""The interleaved timing of parpy.compare (:func:`measure`) and its sweep of
worker counts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

__all__ = ["WORKERS_PER_CPU", "default_workers", "max_workers", "measure", "worker_counts"]

K = TypeVar("K", bound=Hashable)


def measure(
    calls: Mapping[K, Callable[[], object]],
    rounds: int,
    number: int = 1,
    *,
    after: Callable[[K], object] | None = None,
) -> dict[K, list[float]]:
    """Time each call ``rounds`` times; return the seconds per call of each run.

    The runs are interleaved, one of each call per round, and the order
    rotates from round to round, so that drift and noise on the machine fall
    on every call alike. Timed with ``time.perf_counter``.

    Parameters
    ----------
    calls : mapping of key to callable
        The calls to time, each taking no argument.
    rounds : int
        Runs of each call.
    number : int, default 1
        Calls a run times (for calls too quick to time one at a time).
    after : callable, optional
        Called as ``after(key)`` after each run, outside the timing.

    Returns
    -------
    dict
        For each key, the seconds per call of each of its runs.
    """
    keys = list(calls)
    times: dict[K, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        k = r % len(keys) if keys else 0
        for key in keys[k:] + keys[:k]:
            func = calls[key]
            start = time.perf_counter()
            for _ in range(number):
                func()
            times[key].append((time.perf_counter() - start) / number)
            if after is not None:
                after(key)
    return times


def _count(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}, not {value}")
    return value


# compare() refuses more workers than this per CPU (ValueError, before anything
# starts): enough for I/O-bound work ("crawl" sweeps 16 on 2 CPUs), and no
# million threads or processes from a typo.
WORKERS_PER_CPU = 64


def _cpus() -> int:
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return int(count() or 1)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(cpus: int | None = None) -> list[int]:
    """Return 1, the powers of two below the CPU count, and the CPU count.

    Parameters
    ----------
    cpus : int, optional
        The CPU count; by default the CPUs this process may run on.

    Returns
    -------
    list of int
        The worker counts, sorted.
    """
    cpus = _cpus() if cpus is None else cpus
    counts = [1 << k for k in range(cpus.bit_length()) if 1 << k <= cpus]
    return sorted({*counts, cpus})


def max_workers(cpus: int | None = None) -> int:
    """Return the most workers compare() takes: WORKERS_PER_CPU x the CPU count.

    Parameters
    ----------
    cpus : int, optional
        The CPU count; by default the CPUs this process may run on.

    Returns
    -------
    int
        The largest worker count compare() runs.
    """
    return WORKERS_PER_CPU * (_cpus() if cpus is None else cpus)


def worker_counts(workers: int | Iterable[int] | None) -> list[int]:
    """Return the sweep of worker counts that compare() runs for ``workers``.

    Parameters
    ----------
    workers : int or iterable of int or None
        One count or several; None for :func:`default_workers`.

    Returns
    -------
    list of int
        The counts, each once, sorted.

    Raises
    ------
    TypeError
        If ``workers`` or a count in it is not an int.
    ValueError
        If a count is < 1 or over :func:`max_workers`, or there is none.
    """
    if workers is None:
        return default_workers()
    if isinstance(workers, int) and not isinstance(workers, bool):
        workers = [workers]
    if isinstance(workers, (str, bytes)) or not isinstance(workers, Iterable):
        raise TypeError(
            f"workers must be an int or a sequence of ints, not {type(workers).__name__}"
        )
    counts = sorted({_count(w, "workers", 1) for w in workers})
    if not counts:
        raise ValueError("workers is empty")
    cpus = _cpus()
    if counts[-1] > max_workers(cpus):
        raise ValueError(
            f"workers must be <= {max_workers(cpus)} ({WORKERS_PER_CPU} x the {cpus} CPUs), "
            f"not {counts[-1]}"
        )
    return counts


def _capped(counts: list[int], items: int) -> tuple[list[int], str | None]:
    """The sweep with no count over ``items`` (each worker needs an item), and
    a note of the counts that were capped (None if none was)."""
    over = [w for w in counts if w > items]
    if not over:
        return counts, None
    return sorted({min(w, items) for w in counts}), (
        f"{', '.join(map(str, over))} ran as {items}: no more workers than items"
    )

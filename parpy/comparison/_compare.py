"""parpy.compare: one workload on serial Python, threading, multiprocessing,
concurrent.futures and parpy, checked and timed side by side. What each
backend runs: :mod:`parpy.comparison._backends`.

Every backend runs once untimed, and its results must equal serial's
(:class:`MismatchError` otherwise); then the timed runs, interleaved: one run
of every (backend, workers) per round, in an order that rotates from round
to round (:func:`measure`), so that drift and noise on the machine fall on
every backend alike.
"""

from __future__ import annotations

import os
import platform
import reprlib
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from parpy import _core
from parpy._support import dask as _dask
from parpy._support import progress as _progress
from parpy._support.processes import START_METHOD
from parpy._version import __version__
from parpy.comparison import _celery
from parpy.comparison._backends import (
    _BACKENDS,
    DASK_BACKENDS,
    Call,
    _cannot_run,
    _unavailable,
    _variants_of,
    backend_names,
)
from parpy.comparison._measure import _capped, _count, _cpus, measure, worker_counts
from parpy.comparison._work import _prepare, _Work
from parpy.comparison.report import Report, Skip, Timing
from parpy.comparison.workloads import WORKLOADS, Variant, Workload

__all__ = ["MismatchError", "compare"]


class MismatchError(AssertionError):
    """A backend returned results that differ from serial's.

    ``backend``, ``workers`` and ``position`` say where.

    Parameters
    ----------
    message : str
        What differs.
    backend : str
        The backend whose results differ.
    workers : int
        The worker count it ran on.
    position : int or None
        The first differing result's index; None when the lengths differ.
    """

    def __init__(self, message: str, backend: str, workers: int, position: int | None) -> None:
        super().__init__(message)
        self.backend = backend
        self.workers = workers
        self.position = position

    def __reduce__(self) -> Any:
        return (MismatchError, (str(self), self.backend, self.workers, self.position))


def _workers_text(workers: int) -> str:
    return f"{workers} worker{'s' if workers != 1 else ''}"


def _same(a: object, b: object) -> bool:
    """Equal results: equal, or both a float NaN (which equals nothing)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def _check(expected: list[Any], got: object, work: _Work, backend: str, workers: int) -> None:
    """Raise MismatchError unless ``got`` equals serial's ``expected`` (NaN equal to NaN)."""
    if got == expected:
        return
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = 60
    where = f"{backend} on {_workers_text(workers)}"
    if not isinstance(got, list) or len(got) != len(expected):
        size = len(got) if isinstance(got, list) else type(got).__name__
        raise MismatchError(
            f"{where} returned {size} results, serial {len(expected)}", backend, workers, None
        )
    pairs = enumerate(zip(expected, got, strict=True))
    i = next((i for i, (a, b) in pairs if not _same(a, b)), None)
    if i is None:  # equal but for NaNs
        return
    raise MismatchError(
        f"{where} differs from serial at position {i} (item {short.repr(work.items[i])}): "
        f"{short.repr(got[i])} != {short.repr(expected[i])}",
        backend,
        workers,
        i,
    )


def compare(
    work: object,
    items: Iterable[Any] | None = None,
    *,
    backends: str | Iterable[str] | None = None,
    workers: int | Iterable[int] | None = None,
    repeat: int = 5,
    warmup: int = 1,
    progress: bool | None = None,
    client: Any = None,
    pp_servers: int | Iterable[str] | None = None,
    pp_secret: str | None = None,
    celery_broker: str | None = None,
) -> Report:
    """Run ``work`` on each backend, check the results and time them side by side.

    Every backend runs ``work`` over ``items``; its results must be serial's
    (else :class:`MismatchError`); then each is timed over a sweep of worker
    counts. See :mod:`parpy.comparison._backends` for what each backend
    runs. "tiny" and "skewed" also run variants of some backends, each
    reported as a backend of its own after the plain one:
    "multiprocessing[chunksize=k]" and "parpy[chunksize=k]" for k in
    :data:`TINY_CHUNKSIZES` (tiny), "parpy[schedule=s]" for each schedule and
    "multiprocessing[chunksize=1]" (skewed); a variant shares its backend's
    pool. "crawl" fetches the pages of a site that compare serves on
    127.0.0.1 for the run (its items are their paths, "/p/0.html", ...:
    see :class:`Workload`) and extracts their links.

    The Dask backends (``pip install 'parpy[dask]'``): "dask" is Dask's own
    map (``client.map`` of what the Python backends run, a task per item,
    ``pure=False``) and "parpy-dask" is ``parpy.map(kernel, items,
    client=client)`` (kernels only). They run on ``client``, or else on a
    ``LocalCluster`` of as many single-threaded worker processes as the
    swept worker count, started on 127.0.0.1 (startup timed apart, as a
    pool's) and closed after; a script that starts one needs the ``if
    __name__ == "__main__":`` guard, as with multiprocessing.

    "pp", Parallel Python's job server (``pip install 'parpy[pp]'``), runs
    what the process backends run, in chunks sized like process-pool's, on a
    ``pp.Server`` of as many local worker processes as the swept count, or,
    with ``pp_servers``, on ppservers that get every chunk over TCP
    (:mod:`parpy.comparison._pp`). A ppserver that dies mid-run has its
    chunks run by the others (``meta["pp_lost"]`` names it); with none left,
    RuntimeError. Beside it on every workload, "pp[chunksize=1]" submits a
    job per item, as the material does.

    "celery" (``pip install 'parpy[celery]'``) sends the work as Celery
    tasks, each a chunk sized as a process pool's, and beside it on every
    workload "celery[chunksize=1]" sends a task per item, as the material
    does. Without ``celery_broker``, compare starts ``redis-server`` on
    127.0.0.1 and a ``celery worker`` of each swept concurrency (startup
    timed apart) and stops them after.

    Between the timed runs (outside the timing) compare reads how much CPU
    other processes used during each run: the machine's busy CPU time
    from /proc/stat, less that of compare's own process and of every process
    descending from it (its pools, clusters and servers, and any child its
    caller started before, such as a Dask LocalCluster; a child that exited
    counts through its parent's cutime + cstime). Each Timing keeps the
    cores that others kept busy during each run (``Timing.others``); a row
    where others took CPU its workers could have used is marked busy, and
    its backend's verdict gives the figure but no conclusion from it (no
    serial fraction, no "no gain from more workers"), and says that the
    machine was busy and the figure is not to be trusted (:class:`Report`).
    Where there is no /proc/stat (not Linux), nothing is measured or
    marked, and ``meta["busy"]`` says so. The workers of a given
    ``client``, broker or ppservers are others unless they descend from
    compare's process: run elsewhere on this machine, they mark their own
    rows busy.

    Parameters
    ----------
    work : Kernel, callable, list of Stage, Pipeline or str
        A parpy kernel or bound kernel (the Python backends run its
        pure-Python twin; for a user's C function, ``Kernel.from_cfunc``
        or ``from_library``, the same function through ctypes), a Python
        callable, a pipeline (a list of :class:`parpy.Stage`, or a
        :class:`parpy.Pipeline`), or the name of a built-in workload
        (:data:`WORKLOADS`: "iterative", "doubling", "recursive", "tiny",
        "skewed", "pipeline", "crawl").
    items : iterable, optional
        The input; by default a built-in workload's own.
    backends : str or iterable of str, optional
        Names from :data:`BACKENDS` (or one comma-separated string); by
        default all but the Dask ones. "serial" always runs: it is the check
        and the baseline. A backend that cannot run the work is reported as
        skipped, with the reason.
    workers : int or iterable of int, optional
        The worker counts (default: 1, the powers of two below the CPU count,
        and the CPU count; for "crawl", I/O, 1, 4 and 16); serial runs on 1.
        A count over the number of items runs as that number (every
        backend), its row reports the workers that ran, and
        ``meta["workers_capped"]`` says which counts were capped.
    repeat : int, default 5
        Timed runs of each (backend, workers).
    warmup : int, default 1
        Untimed runs before them, the first of which (there is always one)
        is checked.
    progress : bool, optional
        A tqdm bar over the runs; by default on in Jupyter or when stderr is
        a terminal and tqdm is installed.
    client : distributed.Client, optional
        The Dask cluster of the Dask backends: they then run at its thread
        count, and ``backends`` defaults to all, Dask's included.
    pp_servers : int or iterable of str, optional
        For "pp": a number of ``ppserver`` processes that compare starts on
        127.0.0.1 (with a secret of its own) and stops after, each swept
        count's workers dealt over them (so at most one per worker), or the
        addresses ("host:port") of running ones, whose secret is
        ``pp_secret`` (they run on their own workers); by default none
        (local workers only). pp's auto-discovery is never used.
    pp_secret : str, optional
        The secret of the ppservers at ``pp_servers``' addresses.
    celery_broker : str, optional
        For "celery": the URL of a running Redis broker (also the result
        backend) with workers of the app ``parpy.comparison.celery_app``;
        by default compare starts ``redis-server`` on 127.0.0.1 and a worker
        of each swept concurrency, and stops them after. On a given broker,
        "celery" runs at its workers' concurrency, in all.

    Returns
    -------
    Report
        The timings, speedups, fits and verdicts of every backend.

    Raises
    ------
    ValueError
        Before anything runs: an unknown workload or backend, empty
        ``items`` or ``workers``, a worker count over ``WORKERS_PER_CPU``
        (64) x the CPU count, ``repeat`` < 1 or ``warmup`` < 0, or a
        ``client`` without a Dask backend.
    TypeError
        Before anything runs: ``work`` of another kind, no ``items`` for a
        ``work`` that is not a built-in workload, or an argument of the
        wrong type.
    TypeError, OverflowError
        Before anything runs: an item that a user's C function's kernel
        refuses (a bool, an int out of its range: ctypes would take them),
        with its position in a note.
    ImportError
        If a Dask backend is asked for without Dask, or ``progress=True``
        without tqdm.
    kombu.exceptions.OperationalError
        Before anything runs: ``celery_broker`` does not answer.
    RuntimeError
        Before anything runs: no worker of the app consumes the queue
        "parpy.compare" at ``celery_broker``.
    MismatchError
        If a backend's results differ from serial's.
    Exception
        What the work raised on a backend, with a note naming the backend.
    """
    workload: Workload | None = None
    if isinstance(work, str):
        if work not in WORKLOADS:
            raise ValueError(
                f"no built-in workload {work!r}: the workloads are {', '.join(WORKLOADS)}"
            )
        workload = WORKLOADS[work]
    if items is None:
        if workload is None:
            raise TypeError("compare() needs items, unless work names a built-in workload")
        items = workload.items()
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"items must be an iterable, not {type(items).__name__}")
    item_list = list(items)
    if not item_list:
        raise ValueError("items is empty")
    names = backend_names(backends, client)
    servers, secret, broker = _tool_options(pp_servers, pp_secret, celery_broker)
    if workers is None and workload is not None and workload.workers is not None:
        workers = workload.workers
    counts, capped = _capped(worker_counts(workers), len(item_list))
    repeat = _count(repeat, "repeat", 1)
    warmup = _count(warmup, "warmup", 0)
    show = _progress.wanted(progress)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # the workers at a given broker run at their concurrency, as a client's threads
    celery = _celery.concurrency(broker) if broker is not None and "celery" in names else None

    with ExitStack() as stack:
        if workload is None:
            job = _prepare(work, item_list)
        else:
            job = _prepare(*workload.serve(item_list, stack))
            job.variants = workload.variants
            job.description += f" ({workload.about})"
            job.meta["workload"] = work
        job.client = client
        job.pp_servers, job.pp_secret, job.celery_broker = servers, secret, broker
        if capped is not None:
            job.meta["workers_capped"] = capped
        if any(name in DASK_BACKENDS for name in names):
            job.meta["dask"] = (
                f"the given client ({_dask.threads(client)} threads)"
                if client is not None
                else "a LocalCluster of that many 1-thread worker processes on 127.0.0.1"
            )

        # What runs: serial, then each backend followed by its variants.
        plans = [
            plan
            for name in ["serial", *(n for n in names if n != "serial")]
            for plan in [Variant(name, name, ()), *_variants_of(name, job.variants)]
        ]
        skipped: dict[str, Skip] = {}
        for plan in plans:
            reason = _cannot_run(plan.backend, job)
            if reason is not None:
                skipped[plan.name] = Skip(plan.name, reason)
        slots = [
            (plan, w)
            for plan in plans
            if plan.name not in skipped
            for w in _counts_of(plan.backend, counts, client, celery)
        ]
        untimed = max(warmup, 1)

        bar = None
        if show:
            total = (untimed + repeat) * len(slots)
            bar = _progress.tqdm_class()(total=total, desc="compare", unit="run")
            stack.callback(bar.close)

        def advance(key: tuple[str, int]) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{key[0]} x{key[1]}", refresh=False)
                bar.update(1)

        calls, startup = _start(job, slots, stack, bar)
        _check_all(job, calls, skipped, advance)
        if bar is not None:
            bar.total = bar.n + (untimed - 1 + repeat) * len(calls)
            bar.refresh()
        measure(calls, untimed - 1, after=advance)
        others: dict[tuple[str, int], list[float]] = {}
        times = measure(calls, repeat, after=advance, others=others)
        if not others:
            job.meta["busy"] = "not measured (no /proc/stat)"

    loads = {key: tuple(cores) for key, cores in others.items()}
    return Report(
        work=job.description,
        items=len(job.items),
        timings=[
            Timing(name, w, tuple(times[name, w]), startup[name, w], loads.get((name, w)))
            for name, w in calls
        ],
        skipped=[skipped[plan.name] for plan in plans if plan.name in skipped],
        cpus=_cpus(),
        repeat=repeat,
        warmup=warmup,
        meta=_meta(job, load),
    )


def _tool_options(
    pp_servers: int | Iterable[str] | None, pp_secret: str | None, celery_broker: str | None
) -> tuple[int | tuple[str, ...], str | None, str | None]:
    """pp's and Celery's options, checked: (servers, secret, broker)."""
    servers: int | tuple[str, ...] = 0
    if isinstance(pp_servers, bool):
        raise TypeError("pp_servers must be an int or addresses, not bool")
    if isinstance(pp_servers, int):
        if pp_servers < 0:
            raise ValueError(f"pp_servers must be >= 0, not {pp_servers}")
        servers = pp_servers
    elif isinstance(pp_servers, str):
        servers = tuple(a.strip() for a in pp_servers.split(",") if a.strip())
    elif pp_servers is not None:
        servers = tuple(pp_servers)
    if isinstance(servers, tuple):
        for address in servers:
            if not isinstance(address, str):
                raise TypeError(f"pp_servers: an address is a str, not {type(address).__name__}")
            host, _, port = address.rpartition(":")
            if not host or ":" in host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"pp_servers: {address!r} is not host:port")
            if "*" in host:  # pp would broadcast for servers, beyond the machine
                raise ValueError(f"pp_servers: {address!r}: pp's auto-discovery is never used")
        if servers and pp_secret is None:
            raise ValueError("pp_servers at given addresses needs their pp_secret")
    if pp_secret is not None and not isinstance(pp_secret, str):
        raise TypeError(f"pp_secret must be a str, not {type(pp_secret).__name__}")
    if celery_broker is not None and not isinstance(celery_broker, str):
        raise TypeError(f"celery_broker must be a str, not {type(celery_broker).__name__}")
    if celery_broker is not None and not celery_broker.startswith(("redis://", "rediss://")):
        raise ValueError(f"celery_broker must be a redis:// URL, not {celery_broker!r}")
    return servers, pp_secret, celery_broker


def _counts_of(backend: str, counts: list[int], client: Any, celery: int | None) -> list[int]:
    """The worker counts a backend runs at: serial at 1, the Dask backends on
    a given client at its thread count, "celery" on a given broker at its
    workers' concurrency (``celery``), the others over the sweep."""
    if backend == "serial":
        return [1]
    if backend in DASK_BACKENDS and client is not None:
        return [_dask.threads(client)]
    if backend == "celery" and celery is not None:
        return [celery]
    return counts


def _start(
    job: _Work, slots: list[tuple[Variant, int]], stack: ExitStack, bar: Any
) -> tuple[dict[tuple[str, int], Call], dict[tuple[str, int], float]]:
    """Open every pool and process, once per (backend, workers), timing each;
    their closing goes on ``stack``. Returns the call of each (name, workers),
    and the seconds its backend took to start."""
    opened: dict[tuple[str, int], tuple[Any, float]] = {}
    calls: dict[tuple[str, int], Call] = {}
    startup: dict[tuple[str, int], float] = {}
    for plan, w in slots:
        backend = _BACKENDS[plan.backend]
        # the Dask backends share one cluster per worker count
        key = ("dask", w) if plan.backend in DASK_BACKENDS else (plan.backend, w)
        if key not in opened:
            if bar is not None:
                bar.set_postfix_str(f"starting {key[0]} x{w}")
            start = time.perf_counter()
            handle, close = backend.open(job, w)
            opened[key] = handle, time.perf_counter() - start
            stack.callback(close)
        handle, seconds = opened[key]
        calls[plan.name, w] = backend.call(handle, job, w, dict(plan.options))
        startup[plan.name, w] = seconds
    return calls, startup


def _check_all(
    job: _Work,
    calls: dict[tuple[str, int], Call],
    skipped: dict[str, Skip],
    advance: Callable[[tuple[str, int]], object],
) -> None:
    """One untimed run of each call, checked against serial's results.

    A backend that cannot run the work (its workers cannot load the
    function) is removed from ``calls`` and added to ``skipped``; any other
    exception is raised, with a note of the backend."""
    expected = calls["serial", 1]()
    advance(("serial", 1))
    for key, call in list(calls.items()):
        if key == ("serial", 1) or key not in calls:  # (not: skipped at another count)
            continue
        try:
            got = call()
        except Exception as exc:
            reason = _unavailable(exc)
            if reason is None:
                exc.add_note(f"parpy.compare: {key[0]} on {_workers_text(key[1])} raised this")
                raise
            skipped[key[0]] = Skip(key[0], reason)
            for other in [k for k in calls if k[0] == key[0]]:
                del calls[other]
            continue
        _check(expected, got, job, *key)
        advance(key)


def _meta(job: _Work, load: float | None) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "parpy": __version__,
        "gmp": _core.gmp_version,
        "machine": f"{platform.system()} {platform.machine()}",
        "start_method": START_METHOD,
        "load_average": None if load is None else round(load, 2),  # when it began
        **job.meta,
    }

"""The backends of parpy.compare: how each opens its pools and runs the work.

What each backend runs:

- On a kernel (``parpy.fib_iterative``, ``parpy.fib_mod.bind(m)``), the
  Python backends run its pure-Python twin from :mod:`parpy.reference` (with
  the same bound arguments), the book's code as a Python programmer writes
  it; "parpy" runs the whole batch natively (``parpy.map``) and "parpy-pool"
  runs ``parpy.Pool.map`` of the kernel.
- On a user's C function (``Kernel.from_cfunc``, ``Kernel.from_library``),
  the Python backends call the same function through ctypes, item by item
  (with the kernel's bound arguments); ctypes releases the GIL during each
  call. Worker processes (and Dask's) get it as from_library's (path,
  symbol, signature) and make their own ctypes function; a from_cfunc kernel
  does not pickle, so those backends are skipped.
- A Python callable runs as given on every backend that can run it; "parpy"
  (native batches of kernels only) is skipped.
- A pipeline (a list of :class:`parpy.Stage`): "serial" runs the stage
  functions composed, item by item, in a loop; "threading",
  "multiprocessing" and "parpy" run ``parpy.Pipeline`` with
  ``backend="threading"``, ``"multiprocessing"`` and ``"native"``, every stage
  given the swept worker count (the stages' own counts are not used, and one
  worker per stage still overlaps the stages); the pools ("process-pool",
  "thread-pool", "parpy-pool") map the composed function over the items.
  Kernel stages run as their twins on the Python backends, as kernels on the
  parpy ones. The built-in "crawl" is such a pipeline (fetch, then
  ``parpy.extract_links``) over the pages of a site that compare serves on
  127.0.0.1 for the run (:class:`~parpy.comparison.workloads.Workload`).
- "pp" (opt-in) runs what the process backends run (the composed function
  of a pipeline), in chunks sized like process-pool's, on Parallel Python's
  job server: its local worker processes, or ppservers on 127.0.0.1 or at
  given addresses (:mod:`parpy.comparison._pp`).

"celery" (:mod:`parpy.comparison._celery`) runs what the other Python
backends run as Celery tasks, each a chunk of items (a process pool's chunk
size; "celery[chunksize=1]", a variant that it runs on every workload, sends
a task per item), on workers of :mod:`parpy.comparison.celery_app`: on a
``redis-server`` and a worker of each swept concurrency that compare starts
on 127.0.0.1, or on a given broker's running workers, at their concurrency.

Worker pools and processes are started once per (backend, workers), timed
apart from the work (``Timing.startup``), before anything else runs; process
backends use the "forkserver" start method where the platform has it
(parpy runs native threads, and a forked child of a threaded process may
inherit held locks), else "spawn" (pp starts fresh interpreters of its
own). A function that worker processes cannot
get (one that does not pickle, or one defined in ``__main__`` of a notebook
or an interactive session, or one the worker fails to import) makes those
backends a :class:`~parpy.report.Skip` with the reason, never an error.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from parpy import batch
from parpy._support import dask as _dask
from parpy._support.dispatch import name_of
from parpy._support.processes import START_METHOD
from parpy.comparison import _celery, _pp
from parpy.comparison._shipping import WorkerLoadError, _not_shippable, _ready, _Shipped
from parpy.comparison._work import Call, Opened, _pool_chunksize, _Work
from parpy.comparison.workloads import Variant
from parpy.pipeline import Pipeline, Stage

__all__ = ["BACKENDS", "DASK_BACKENDS", "TOOL_BACKENDS", "backend_names", "thread_map"]

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = (
    "serial",
    "threading",
    "multiprocessing",
    "process-pool",
    "thread-pool",
    "parpy",
    "parpy-pool",
    "dask",
    "parpy-dask",
    "pp",
    "celery",
)
# Backends whose workers are other processes, which must get the function.
_PROCESS_BACKENDS = ("multiprocessing", "process-pool", "pp", "celery")
# Run only when asked for, or when compare() is given a client: they need
# Dask and a cluster.
DASK_BACKENDS = ("dask", "parpy-dask")
# The material's job server and task queue: run only when asked for; each
# needs its package (and Celery a broker) and starts servers of its own.
TOOL_BACKENDS = ("pp", "celery")
_EXTRAS = {"pp": "pp", "celery": "celery"}  # the package each needs: its extra


# ---- the stdlib's ways to run a function over a batch ------------------------


def thread_map(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """Return ``[func(x) for x in items]``, split over threading.Threads.

    Thread ``i`` takes items ``i, i + workers, ...``; the results come back in
    input order.

    Parameters
    ----------
    func : callable
        Called on each item.
    items : sequence
        The items.
    workers : int
        The threads (no more than the items, at least one).

    Returns
    -------
    list
        ``func(x)`` for each item, in input order.

    Raises
    ------
    Exception
        The first exception raised in a thread, once every thread ended.
    """
    workers = max(1, min(workers, len(items)))  # every thread has an item
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


def _loop(func: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [func(x) for x in items]


# ---- backends ----------------------------------------------------------------
#
# A backend opens what it keeps between runs (a pool, a pipeline) once per
# worker count, and makes the call that one run makes; variants share what
# their backend opened.


def _nothing() -> None:
    pass


def _staged(stages: Iterable[Stage], workers: int, ship: bool = False) -> list[Stage]:
    return [Stage(_Shipped(s.func) if ship else s.func, workers, s.name) for s in stages]


def _open_pipeline(stages: list[Stage], backend: str) -> Opened:
    pipe = Pipeline(stages, backend=backend)
    try:
        pipe.map([])  # starts its workers
    except BaseException:
        pipe.close()
        raise
    return pipe, pipe.close


def _open_serial(work: _Work, workers: int) -> Opened:
    return None, _nothing


def _call_serial(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    return functools.partial(_loop, work.python, work.items)


def _open_threading(work: _Work, workers: int) -> Opened:
    if work.pipeline:
        return _open_pipeline(_staged(work.python_stages, workers), "threading")
    return None, _nothing


def _call_threading(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    if work.pipeline:
        return functools.partial(handle.map, work.items)
    return functools.partial(thread_map, work.python, work.items, workers)


def _open_multiprocessing(work: _Work, workers: int) -> Opened:
    if work.pipeline:
        return _open_pipeline(_staged(work.python_stages, workers, True), "multiprocessing")
    pool = multiprocessing.get_context(START_METHOD).Pool(workers)

    def close() -> None:
        pool.terminate()
        pool.join()

    try:
        pool.map(_ready, range(workers), chunksize=1)
    except BaseException:
        close()
        raise
    return pool, close


def _call_multiprocessing(
    handle: Any, work: _Work, workers: int, options: Mapping[str, Any]
) -> Call:
    if work.pipeline:
        return functools.partial(handle.map, work.items)
    return functools.partial(
        handle.map, _Shipped(work.python), work.items, options.get("chunksize")
    )


def _open_process_pool(work: _Work, workers: int) -> Opened:
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(START_METHOD))

    def close() -> None:
        pool.shutdown(wait=True, cancel_futures=True)

    try:
        list(pool.map(_ready, range(workers)))
    except BaseException:
        close()
        raise
    return pool, close


def _call_process_pool(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    chunksize = options.get("chunksize") or _pool_chunksize(len(work.items), workers)

    def call() -> list[Any]:
        return list(handle.map(_Shipped(work.python), work.items, chunksize=chunksize))

    return call


def _open_thread_pool(work: _Work, workers: int) -> Opened:
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers)
    return pool, functools.partial(pool.shutdown, wait=True, cancel_futures=True)


def _call_thread_pool(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    def call() -> list[Any]:
        return list(handle.map(work.python, work.items))

    return call


def _open_parpy(work: _Work, workers: int) -> Opened:
    if work.pipeline:
        return _open_pipeline(_staged(work.native_stages, workers), "native")
    return None, _nothing


def _call_parpy(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    if work.pipeline:
        return functools.partial(handle.map, work.items)
    assert work.kernel is not None
    return functools.partial(batch.map, work.kernel, work.items, workers=workers, **options)


def _open_parpy_pool(work: _Work, workers: int) -> Opened:
    from parpy.pool import Pool

    pool = Pool(workers)

    def close() -> None:
        pool.terminate()
        pool.join()

    return pool, close


def _call_parpy_pool(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    if work.star:
        return functools.partial(handle.starmap, work.kernel, work.items, options.get("chunksize"))
    return functools.partial(handle.map, work.native, work.items, options.get("chunksize"))


def _dask_client(work: _Work, workers: int) -> Opened:
    """The Client the Dask backends run on: the user's, or a LocalCluster of
    ``workers`` single-threaded worker processes on 127.0.0.1 (both Dask
    backends share it: see :func:`_start`), closed after the comparison."""
    if work.client is not None:
        return work.client, _nothing
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    try:
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise

    def close() -> None:
        client.close()
        cluster.close()

    return client, close


def _dask_map(client: Any, func: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Dask's own map: a task per item, each computed (``pure=False``)."""
    return list(client.gather(client.map(func, items, pure=False)))


def _call_dask(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    return functools.partial(_dask_map, handle, work.python, work.items)


def _call_parpy_dask(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    assert work.kernel is not None
    return functools.partial(batch.map, work.kernel, work.items, client=handle)


class _Backend(NamedTuple):
    open: Callable[[_Work, int], Opened]
    call: Callable[[Any, _Work, int, Mapping[str, Any]], Call]
    variants: tuple[Variant, ...] = ()  # run on every workload, after a workload's own


# The material sends a job (pp) or a task (Celery) per item: beside chunks, on
# every workload.
def _per_item(backend: str) -> tuple[Variant, ...]:
    return (Variant(f"{backend}[chunksize=1]", backend, (("chunksize", 1),)),)


_BACKENDS: dict[str, _Backend] = {
    "serial": _Backend(_open_serial, _call_serial),
    "threading": _Backend(_open_threading, _call_threading),
    "multiprocessing": _Backend(_open_multiprocessing, _call_multiprocessing),
    "process-pool": _Backend(_open_process_pool, _call_process_pool),
    "thread-pool": _Backend(_open_thread_pool, _call_thread_pool),
    "parpy": _Backend(_open_parpy, _call_parpy),
    "parpy-pool": _Backend(_open_parpy_pool, _call_parpy_pool),
    "dask": _Backend(_dask_client, _call_dask),
    "parpy-dask": _Backend(_dask_client, _call_parpy_dask),
    "pp": _Backend(_pp.open_pp, _pp.call_pp, _per_item("pp")),
    "celery": _Backend(_celery.open_celery, _celery.call_celery, _per_item("celery")),
}
assert tuple(_BACKENDS) == BACKENDS


def _variants_of(backend: str, variants: Iterable[Variant]) -> list[Variant]:
    """The variants ``backend`` runs: of ``variants`` (a workload's), those on
    it, then its own; each name once."""
    mine = [v for v in variants if v.backend == backend]
    names = {v.name for v in mine}
    return mine + [v for v in _BACKENDS[backend].variants if v.name not in names]


def _cannot_run(backend: str, work: _Work) -> str | None:
    """Why ``backend`` cannot run ``work``, found before anything runs; else None."""
    if backend in _PROCESS_BACKENDS:
        if work.pipeline:
            funcs = [s.func for s in work.python_stages]
            if backend == "multiprocessing":  # else the composed function, checked below
                reasons = (_not_shippable(f) for f in funcs)
                return next((r for r in reasons if r is not None), None)
        return _not_shippable(work.python)
    if backend == "parpy" and work.kernel is None and not work.pipeline:
        return (
            f"parpy.map runs parpy kernels, and {name_of(work.python)} is a Python callable "
            "(parpy-pool runs it on native threads, taking the GIL per call)"
        )
    if backend == "parpy-dask" and work.kernel is None:
        what = "a pipeline" if work.pipeline else f"{name_of(work.python)}, a Python callable"
        return f'parpy.map(client=) runs parpy kernels, not {what} ("dask" runs it)'
    if backend in DASK_BACKENDS and work.kernel is not None and work.kernel.signature is not None:
        return _not_shippable(work.kernel)  # a user's C function: from_library's form only
    return None


def _unavailable(exc: BaseException) -> str | None:
    """The reason to skip a backend whose check run raised ``exc``; None to re-raise it."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, WorkerLoadError):
        return str(exc)
    if isinstance(exc, BrokenProcessPool):
        return f"its worker processes died ({exc})"
    return None


def backend_names(backends: str | Iterable[str] | None, client: object) -> list[str]:
    """Return the backends that compare() runs for ``backends``.

    Parameters
    ----------
    backends : str or iterable of str or None
        Names from :data:`BACKENDS`, or one comma-separated string; None for
        all but Dask's (all with a client) and pp and Celery.
    client : distributed.Client or None
        The Dask client compare() was given.

    Returns
    -------
    list of str
        The names, each once, in the order given.

    Raises
    ------
    ValueError
        If a name is unknown, none is given, a ``client`` comes without a
        Dask backend, or the client is closed.
    TypeError
        If ``client`` is not a ``distributed.Client``.
    ImportError
        If a Dask, pp or Celery backend is asked for and its package is not
        installed.
    """
    if backends is None:
        backends = [
            b
            for b in BACKENDS
            if (client is not None or b not in DASK_BACKENDS) and b not in TOOL_BACKENDS
        ]
    elif isinstance(backends, str):
        backends = [name.strip() for name in backends.split(",") if name.strip()]
    names = list(dict.fromkeys(backends))
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise ValueError(
            f"backends must be some of {', '.join(BACKENDS)}, not "
            f"{', '.join(map(repr, unknown)) or 'none'}"
        )
    dask = [name for name in names if name in DASK_BACKENDS]
    if client is not None and not dask:
        raise ValueError(
            f"client= is for the backends {', '.join(map(repr, DASK_BACKENDS))}: add them to "
            "backends (or leave backends out for all)"
        )
    if dask and client is not None:
        _dask.require(client)
    elif dask:  # ImportError now, naming the extra, if Dask is missing
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ImportError(
                f"the backends {', '.join(map(repr, dask))} need Dask's distributed scheduler: "
                "pip install 'parpy[dask]'"
            ) from None
    for name in names:
        if name in TOOL_BACKENDS:
            try:
                __import__(_EXTRAS[name])
            except ImportError:
                raise ImportError(
                    f"the backend {name!r} needs the package {_EXTRAS[name]}: "
                    f"pip install 'parpy[{_EXTRAS[name]}]'"
                ) from None
    return names

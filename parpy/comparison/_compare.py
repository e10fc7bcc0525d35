"""parpy.compare: one workload on serial Python, threading, multiprocessing,
concurrent.futures and parpy, checked and timed side by side.

What each backend runs:

- On a kernel (``parpy.fib_iterative``, ``parpy.fib_mod.bind(m)``), the
  Python backends run its pure-Python twin from :mod:`parpy.reference` (with
  the same bound arguments), the book's code as a Python programmer writes
  it; "parpy" runs the whole batch natively (``parpy.map``) and "parpy-pool"
  runs ``parpy.Pool.map`` of the kernel.
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
  127.0.0.1 for the run (:class:`Workload`).

Worker pools and processes are started once per (backend, workers), timed
apart from the work (``Timing.startup``), before anything else runs; process
backends use the "forkserver" start method where the platform has it
(parpy runs native threads, and a forked child of a threaded process may
inherit held locks), else "spawn". A function that worker processes cannot
get (one that does not pickle, or one defined in ``__main__`` of a notebook
or an interactive session, or one the worker fails to import) makes those
backends a :class:`~parpy.report.Skip` with the reason, never an error.

Every backend runs once untimed, and its results must equal serial's
(:class:`MismatchError` otherwise); then the timed runs, interleaved: one run
of every (backend, workers) per round, in an order that rotates from round
to round (:func:`measure`), so that drift and noise on the machine fall on
every backend alike.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import pickle
import platform
import random
import reprlib
import sys
import threading
import time
import types
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urljoin

from parpy import _core, batch, reference
from parpy._core import Kernel
from parpy._support import dask as _dask
from parpy._support import progress as _progress
from parpy._support.dispatch import name_of
from parpy._support.processes import START_METHOD
from parpy._version import __version__
from parpy.comparison.report import Report, Skip, Timing
from parpy.crawler.site import Site, fetch, page_path
from parpy.pipeline import Pipeline, Stage

__all__ = [
    "BACKENDS",
    "WORKLOADS",
    "MismatchError",
    "WorkerLoadError",
    "Workload",
    "compare",
    "make_ns",
    "measure",
    "thread_map",
]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)

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
)
_PROCESS_BACKENDS = ("multiprocessing", "process-pool")
# Run only when asked for, or when compare() is given a client: they need
# Dask and a cluster.
DASK_BACKENDS = ("dask", "parpy-dask")


class MismatchError(AssertionError):
    """A backend returned results that differ from serial's.

    ``backend``, ``workers`` and ``position`` (the first differing result's
    index; None when the lengths differ) say where."""

    def __init__(self, message: str, backend: str, workers: int, position: int | None) -> None:
        super().__init__(message)
        self.backend = backend
        self.workers = workers
        self.position = position

    def __reduce__(self) -> Any:
        return (MismatchError, (str(self), self.backend, self.workers, self.position))


class WorkerLoadError(RuntimeError):
    """A worker process could not load the function it was sent."""


# ---- inputs ------------------------------------------------------------------


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


# ---- the built-in workloads --------------------------------------------------


class Variant(NamedTuple):
    """A backend run with options, reported as a backend of its own."""

    name: str  # e.g. "parpy[chunksize=16]"
    backend: str  # e.g. "parpy"
    options: tuple[tuple[str, Any], ...]  # e.g. (("chunksize", 16),)


def _variants(backend: str, option: str, values: Iterable[Any]) -> tuple[Variant, ...]:
    return tuple(Variant(f"{backend}[{option}={v}]", backend, ((option, v),)) for v in values)


@dataclass(frozen=True)
class Workload:
    """A built-in workload: ``count`` values of n drawn by :func:`make_ns`, put
    through ``work`` (a kernel, or a pipeline's stages, fed the decimal text
    of each n).

    A workload with a ``site`` runs against a website instead: its items are
    the paths of ``count`` pages ("/p/0.html", ...), and :func:`compare`
    serves them for the run (:meth:`serve`): ``site(pages)`` starts a
    :class:`parpy._site.Site`, the items become its URLs, and each kernel
    stage is bound to its root URL. ``workers``, when set, is the sweep of
    worker counts that compare() runs when it is given none."""

    work: Kernel | tuple[Stage, ...]
    count: int
    n_min: int
    n_max: int
    about: str  # what it shows
    distribution: str = "uniform"
    variants: tuple[Variant, ...] = ()  # runs with options, beside the plain backends
    seed: int = 0
    site: Callable[[int], Site] | None = None  # serves the items: a Site of that many pages
    workers: tuple[int, ...] | None = None  # the default sweep, if not default_workers()

    def __str__(self) -> str:
        if isinstance(self.work, Kernel):
            what = self.work.__name__
        else:
            what = " -> ".join(stage.name for stage in self.work)
        if self.site is not None:
            return f"{what} over {self.count} pages of a site on 127.0.0.1"
        spread = ", log-uniform" if self.distribution == "loguniform" else ""
        return f"{what} over {self.count} n{spread} in [{self.n_min}, {self.n_max}]"

    def items(self, count: int | None = None) -> list[Any]:
        """The workload's input: ``count`` (default: its own) values of n; for
        a pipeline, their decimal text; for a workload with a site, the paths
        of that many pages."""
        count = self.count if count is None else count
        if self.site is not None:
            return [page_path(i) for i in range(count)]
        ns = make_ns(count, self.n_min, self.n_max, self.distribution, self.seed)
        return ns if isinstance(self.work, Kernel) else [str(n) for n in ns]

    def serve(self, items: list[Any], stack: ExitStack) -> tuple[object, list[Any]]:
        """The work and the items that run: for a workload with a site, a
        site of ``len(items)`` pages started now and closed by ``stack``, the
        items (paths) as its URLs and the kernel stages bound to its root
        URL; for any other, ``work`` and ``items`` as they are."""
        if self.site is None or isinstance(self.work, Kernel):
            return self.work, items
        site = stack.enter_context(self.site(len(items)))
        stages = tuple(
            Stage(s.func.bind(site.url), s.workers, s.name) if isinstance(s.func, Kernel) else s
            for s in self.work
        )
        return stages, [urljoin(site.url, path) for path in items]


TINY_CHUNKSIZES = (1, 10, 100, 1000)
CRAWL_PAGES = 50
CRAWL_DELAY = 0.01
CRAWL_WORKERS = (1, 4, 16)

# Sized so that serial Python takes about 0.3 s: `python -m parpy compare`
# (iterative, every backend, workers 1 and 2) then takes about 15 s on 2 cores.
# "crawl" is I/O: CRAWL_PAGES pages that answer after CRAWL_DELAY seconds,
# fetched (urllib, in Python) then parsed for links (the kernel, bound to the
# site's root: the site's absolute-path links resolve as on the page), swept
# over more workers than CPUs; serial takes about 0.65 s, and the whole
# `python -m parpy compare crawl` about 45 s on 2 cores (43 s measured).
WORKLOADS: dict[str, Workload] = {
    "iterative": Workload(_core.fib_iterative, 120, 2_000, 25_000, "the book's loop"),
    "doubling": Workload(_core.fib, 100, 100_000, 200_000, "fast doubling, big numbers"),
    "recursive": Workload(_core.fib_recursive, 40, 20, 27, "naive recursion: pure CPU"),
    "tiny": Workload(
        _core.fib,
        10_000,
        0,
        93,
        "granularity: items of a microsecond, in chunks of each size",
        variants=_variants("multiprocessing", "chunksize", TINY_CHUNKSIZES)
        + _variants("parpy", "chunksize", TINY_CHUNKSIZES),
    ),
    "skewed": Workload(
        _core.fib,
        1_200,
        10,
        200_000,
        "load balance: item costs over orders of magnitude, each schedule",
        distribution="loguniform",
        variants=_variants("multiprocessing", "chunksize", (1,))
        + _variants("parpy", "schedule", ("static", "dynamic", "guided")),
    ),
    "pipeline": Workload(
        (Stage(int), Stage(_core.fib), Stage(_core.to_decimal), Stage(len)),
        400,
        10_000,
        50_000,
        "Python stages around native ones; the input is the text of each n",
    ),
    "crawl": Workload(
        (Stage(fetch, name="fetch"), Stage(_core.extract_links, name="extract")),
        CRAWL_PAGES,
        0,
        0,
        f"I/O: {CRAWL_DELAY * 1000:g} ms a page, fetched in Python, links extracted natively; "
        "every backend on 1, 4 and 16 workers in about 45 s on 2 cores",
        site=functools.partial(Site, delay=CRAWL_DELAY),
        workers=CRAWL_WORKERS,
    ),
}


# ---- picklable pieces: what Python backends run ------------------------------


class _Trailing:
    """``func(x, *args)``: a bound kernel's twin (picklable, unlike a closure)."""

    __slots__ = ("args", "func")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args

    def __call__(self, x: Any) -> Any:
        return self.func(x, *self.args)

    def __reduce__(self) -> Any:
        return (_Trailing, (self.func, self.args))

    def __repr__(self) -> str:
        return f"{_label(self.func)}(x, {', '.join(map(repr, self.args))})"


def _label(func: Callable[..., Any]) -> str:
    """A function's name for the report: parpy.reference.fib, fib_mod.bind(7), ..."""
    if isinstance(func, types.FunctionType) and func.__module__ != "__main__":
        return f"{func.__module__}.{func.__qualname__}"
    if isinstance(func, (_Trailing, _Star, _Composed)):
        return repr(func)
    return name_of(func)


class _Star:
    """``func(*x)``: a kernel of several arguments, over tuples."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, x: Any) -> Any:
        return self.func(*x)

    def __reduce__(self) -> Any:
        return (_Star, (self.func,))

    def __repr__(self) -> str:
        return f"{_label(self.func)}(*x)"


class _Composed:
    """The stage functions applied in turn: one item through a whole pipeline."""

    __slots__ = ("funcs",)

    def __init__(self, funcs: Sequence[Callable[[Any], Any]]) -> None:
        self.funcs = tuple(funcs)

    def __call__(self, x: Any) -> Any:
        for func in self.funcs:
            x = func(x)
        return x

    def __reduce__(self) -> Any:
        return (_Composed, (self.funcs,))

    def __repr__(self) -> str:
        return " -> ".join(map(_label, self.funcs))


class _Shipped:
    """``func``, sent to worker processes as its pickle and loaded when the
    task is: a worker that cannot load it gets a function that raises
    :class:`WorkerLoadError` instead (a multiprocessing.Pool worker that fails
    to unpickle its task dies, and the map then waits forever)."""

    __slots__ = ("blob", "func")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.blob = pickle.dumps(func, pickle.HIGHEST_PROTOCOL)

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)

    def __reduce__(self) -> Any:
        return (_load, (self.blob,))


def _load(blob: bytes) -> Callable[..., Any]:
    try:
        func: Callable[..., Any] = pickle.loads(blob)
    except Exception as exc:
        return _Unloadable(f"{type(exc).__name__}: {exc}")
    return func


class _Unloadable:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, *args: Any) -> Any:
        raise WorkerLoadError(f"a worker process could not load the function: {self.reason}")


def _ready(i: int) -> int:
    """A trivial task: a worker process is up and has imported parpy."""
    return i


class _MainFinder(pickle.Pickler):
    """Pickles to nowhere, noting functions and classes of ``__main__``."""

    def __init__(self) -> None:
        super().__init__(_Discard(), pickle.HIGHEST_PROTOCOL)
        self.found: str | None = None

    def persistent_id(self, obj: Any) -> None:
        if (
            self.found is None
            and isinstance(obj, (types.FunctionType, type))
            and getattr(obj, "__module__", None) == "__main__"
        ):
            self.found = obj.__qualname__
        return None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _not_shippable(func: Callable[..., Any]) -> str | None:
    """Why worker processes cannot get ``func``; None when they can."""
    finder = _MainFinder()
    try:
        finder.dump(func)
    except Exception as exc:  # a lambda, a local function, an object with a lock...
        return f"{name_of(func)} does not pickle ({exc}), so no worker process can get it"
    main = sys.modules.get("__main__")
    if finder.found is not None and not getattr(main, "__file__", None):
        return (
            f"{finder.found} is defined in __main__ of a notebook or an interactive session, "
            f"which worker processes cannot import: define it in a module"
        )
    return None


# ---- the work, as each backend runs it ---------------------------------------


@dataclass
class _Work:
    items: list[Any]
    description: str
    python: Callable[[Any], Any]  # what the Python backends run per item
    native: Callable[[Any], Any]  # what parpy-pool runs per item (a kernel where one is)
    kernel: Kernel | None = None  # what parpy.map runs
    star: bool = False  # a kernel of several arguments over tuples
    python_stages: tuple[Stage, ...] = ()
    native_stages: tuple[Stage, ...] = ()
    variants: tuple[Variant, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    client: Any = None  # the user's distributed.Client, for the Dask backends

    @property
    def pipeline(self) -> bool:
        return bool(self.native_stages)


def _twin(kernel: Kernel) -> Callable[[Any], Any] | None:
    """The pure-Python twin of a kernel (with its bound arguments); None if it has none."""
    ref: Callable[..., Any] | None = getattr(reference, kernel.__name__, None)
    if ref is None:
        return None
    if kernel.bound:
        return _Trailing(ref, tuple(kernel.bound))
    return ref


def _python_of(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """What the Python backends run for a stage function: a kernel's twin."""
    if isinstance(func, Kernel):
        return _twin(func) or func
    return func


def _describe_items(items: Sequence[Any]) -> str:
    if items and all(type(x) is int for x in items):
        return f"{len(items)} n in [{min(items)}, {max(items)}]"
    return f"{len(items)} items"


def _prepare(work: object, items: list[Any]) -> _Work:
    """The work as each backend runs it (validated; nothing runs yet)."""
    if isinstance(work, Pipeline):
        work = work.stages
    if isinstance(work, Kernel):
        label = name_of(work)
        twin = _twin(work)
        star = work.bound is None and work.min_args > 1
        python: Callable[[Any], Any] = work if twin is None else twin
        if star:
            python = _Star(python)
        return _Work(
            items,
            f"{label} over {_describe_items(items)}",
            python,
            work,
            work,
            star,
            meta={
                "python_runs": "the kernel (it has no twin)" if twin is None else _label(python),
                "parpy_runs": f"parpy.map({label}), "
                f"parpy.Pool.{'starmap' if star else 'map'}({label})",
            },
        )
    if isinstance(work, (list, tuple)):
        if not work:
            raise ValueError("a pipeline needs at least one stage")
        stages = tuple(s if isinstance(s, Stage) else Stage(s) for s in work)
        python_funcs = [_python_of(s.func) for s in stages]
        return _Work(
            items,
            f"pipeline {' -> '.join(s.name for s in stages)} over {_describe_items(items)}",
            _Composed(python_funcs),
            _Composed([s.func for s in stages]),
            python_stages=tuple(
                Stage(f, s.workers, s.name) for f, s in zip(python_funcs, stages, strict=True)
            ),
            native_stages=stages,
            meta={
                "python_runs": " -> ".join(map(_label, python_funcs)),
                "parpy_runs": "parpy.Pipeline (native), parpy.Pool.map of the stages composed",
                "pipeline_workers": "every stage on the swept worker count",
            },
        )
    if callable(work):
        name = name_of(work)
        return _Work(
            items,
            f"{name} over {_describe_items(items)}",
            work,
            work,
            meta={"python_runs": _label(work), "parpy_runs": f"parpy.Pool.map({name})"},
        )
    raise TypeError(
        "work must be a parpy kernel, a Python callable, a list of parpy.Stage or the name of "
        f"a built-in workload ({', '.join(WORKLOADS)}), not {type(work).__name__}"
    )


# ---- the stdlib's ways to run a function over a batch ------------------------


def thread_map(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[func(x) for x in items]`` split over ``workers`` threading.Threads
    (no more than the items).

    Thread ``i`` takes items ``i, i + workers, ...``; the results come back in
    input order, and the first exception raised in a thread is re-raised.
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


def _pool_chunksize(items: int, workers: int) -> int:
    """multiprocessing.Pool.map's default chunk size: about 4 chunks per worker."""
    return max(1, math.ceil(items / (4 * workers)))


# ---- backends ----------------------------------------------------------------
#
# A backend opens what it keeps between runs (a pool, a pipeline) once per
# worker count, and makes the call that one run makes; variants share what
# their backend opened.

Opened = tuple[Any, Callable[[], None]]  # the handle, and how to close it
Call = Callable[[], list[Any]]


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
}
assert tuple(_BACKENDS) == BACKENDS


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
    return None


def _unavailable(exc: BaseException) -> str | None:
    """The reason to skip a backend whose check run raised ``exc``; None to re-raise it."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, WorkerLoadError):
        return str(exc)
    if isinstance(exc, BrokenProcessPool):
        return f"its worker processes died ({exc})"
    return None


# ---- timing ------------------------------------------------------------------


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
    on every call alike. A run times ``number`` calls (for calls too quick to
    time one at a time), with ``time.perf_counter``; ``after(key)`` is called
    after each run, outside the timing.
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


# ---- compare -----------------------------------------------------------------


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
    """1, the powers of two below the CPU count, and the CPU count."""
    cpus = _cpus() if cpus is None else cpus
    counts = [1 << k for k in range(cpus.bit_length()) if 1 << k <= cpus]
    return sorted({*counts, cpus})


def max_workers(cpus: int | None = None) -> int:
    """The most workers compare() takes: WORKERS_PER_CPU x the CPU count."""
    return WORKERS_PER_CPU * (_cpus() if cpus is None else cpus)


def worker_counts(workers: int | Iterable[int] | None) -> list[int]:
    """The sweep of worker counts that compare() runs for ``workers``, sorted;
    a count over max_workers() is a ValueError."""
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


def backend_names(backends: str | Iterable[str] | None, client: object) -> list[str]:
    """The backends that compare() runs for ``backends`` (names, or one
    comma-separated string; None: all but Dask's, unless given a client)."""
    if backends is None:
        backends = [b for b in BACKENDS if client is not None or b not in DASK_BACKENDS]
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
    return names


def _workers_text(workers: int) -> str:
    return f"{workers} worker{'s' if workers != 1 else ''}"


def _check(expected: list[Any], got: object, work: _Work, backend: str, workers: int) -> None:
    """Raise MismatchError unless ``got`` equals serial's ``expected``."""
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
    i = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
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
) -> Report:
    """Run ``work`` over ``items`` on each backend, check that every backend
    returns serial's results, and time them over a sweep of worker counts.

    ``work``: a parpy kernel or bound kernel (the Python backends run its
    pure-Python twin), a Python callable, a pipeline (a list of
    :class:`parpy.Stage`, or a :class:`parpy.Pipeline`), or the name of a
    built-in workload (:data:`WORKLOADS`: "iterative", "doubling",
    "recursive", "tiny", "skewed", "pipeline", "crawl"; ``items`` then
    defaults to its own). See the module's docstring for what each backend
    runs. "tiny" and "skewed" also run variants of some backends, each
    reported as a backend of its own after the plain one:
    "multiprocessing[chunksize=k]" and "parpy[chunksize=k]" for k in
    :data:`TINY_CHUNKSIZES` (tiny), "parpy[schedule=s]" for each schedule and
    "multiprocessing[chunksize=1]" (skewed); a variant shares its backend's
    pool. "crawl" fetches the pages of a site that compare serves on
    127.0.0.1 for the run (its items are their paths, "/p/0.html", ...:
    see :class:`Workload`) and extracts their links.

    ``backends``: names from :data:`BACKENDS` (or one comma-separated
    string); default all but the Dask ones. "serial" always runs: it is the
    check and the baseline. A backend that cannot run the work is reported
    as skipped, with the reason. The Dask backends (``pip install
    'parpy[dask]'``): "dask" is Dask's own map (``client.map`` of what the
    Python backends run, a task per item, ``pure=False``) and "parpy-dask"
    is ``parpy.map(kernel, items, client=client)`` (kernels only). They run
    on ``client`` (a ``distributed.Client``: the backends then default to
    all, Dask's included, and run at the cluster's thread count), or else
    on a ``LocalCluster`` of as many single-threaded worker processes as
    the swept worker count, started on 127.0.0.1 (startup timed apart, as
    a pool's) and closed after; a script that starts one needs the ``if
    __name__ == "__main__":`` guard, as with multiprocessing.
    ``workers``: an int or several (default: 1, the powers of two below the
    CPU count, and the CPU count; for "crawl", I/O, 1, 4 and 16); serial
    runs on 1. A count over ``WORKERS_PER_CPU`` (64) x the CPU count is a
    ValueError, before anything starts; a count over the number of items
    runs as that number (every backend: threads, processes, pools, native
    workers, Dask workers), its row reports the workers that ran, and
    ``meta["workers_capped"]`` says which counts were capped.
    ``repeat``: timed runs of each (backend, workers); ``warmup``: untimed
    runs before them, the first of which (there is always one) is checked.
    ``progress``: a tqdm bar over the runs; default on in Jupyter or when
    stderr is a terminal and tqdm is installed.

    Returns a :class:`parpy.Report`.
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
    if workers is None and workload is not None and workload.workers is not None:
        workers = workload.workers
    counts, capped = _capped(worker_counts(workers), len(item_list))
    repeat = _count(repeat, "repeat", 1)
    warmup = _count(warmup, "warmup", 0)
    show = _progress.wanted(progress)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    with ExitStack() as stack:
        if workload is None:
            job = _prepare(work, item_list)
        else:
            job = _prepare(*workload.serve(item_list, stack))
            job.variants = workload.variants
            job.description += f" ({workload.about})"
            job.meta["workload"] = work
        job.client = client
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
            for plan in [Variant(name, name, ()), *(v for v in job.variants if v.backend == name)]
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
            for w in _counts_of(plan.backend, counts, client)
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
        times = measure(calls, repeat, after=advance)

    return Report(
        work=job.description,
        items=len(job.items),
        timings=[Timing(name, w, tuple(times[name, w]), startup[name, w]) for name, w in calls],
        skipped=[skipped[plan.name] for plan in plans if plan.name in skipped],
        cpus=_cpus(),
        repeat=repeat,
        warmup=warmup,
        meta=_meta(job, load),
    )


def _counts_of(backend: str, counts: list[int], client: Any) -> list[int]:
    """The worker counts a backend runs at: serial at 1, the Dask backends on
    a given client at its thread count, the others over the sweep."""
    if backend == "serial":
        return [1]
    if backend in DASK_BACKENDS and client is not None:
        return [_dask.threads(client)]
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

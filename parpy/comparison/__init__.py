"""parpy.compare: one workload on serial Python, threading, multiprocessing,
concurrent.futures, Dask and parpy, checked and timed side by side.

The built-in workloads (``workloads``), how each backend runs the work and
ships it to worker processes, the interleaved measurement, compare() itself
(all in ``_compare``), and the :class:`~parpy.report.Report` it returns
(``report``)."""

from parpy.comparison._compare import (
    BACKENDS,
    CRAWL_WORKERS,
    DASK_BACKENDS,
    START_METHOD,
    TINY_CHUNKSIZES,
    WORKERS_PER_CPU,
    WORKLOADS,
    MismatchError,
    WorkerLoadError,
    Workload,
    backend_names,
    compare,
    default_workers,
    make_ns,
    max_workers,
    measure,
    thread_map,
    worker_counts,
)
from parpy.comparison.report import Report, Skip, Timing

__all__ = [
    "BACKENDS",
    "CRAWL_WORKERS",
    "DASK_BACKENDS",
    "TINY_CHUNKSIZES",
    "WORKERS_PER_CPU",
    "START_METHOD",
    "WORKLOADS",
    "MismatchError",
    "Report",
    "Skip",
    "Timing",
    "WorkerLoadError",
    "Workload",
    "backend_names",
    "compare",
    "default_workers",
    "make_ns",
    "max_workers",
    "measure",
    "thread_map",
    "worker_counts",
]

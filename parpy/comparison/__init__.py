"""parpy.compare: one workload on serial Python, threading, multiprocessing,
concurrent.futures, Dask and parpy, checked and timed side by side.

The built-in workloads (``workloads``), what ships functions to worker
processes (``_shipping``), the work as each backend runs it (``_work``), the
backends (``_backends``), the interleaved measurement and the sweep of worker
counts (``_measure``), compare() itself (``_compare``), and the
:class:`~parpy.report.Report` it returns (``report``)."""

from parpy._support.processes import START_METHOD
from parpy.comparison._backends import (
    BACKENDS,
    DASK_BACKENDS,
    TOOL_BACKENDS,
    backend_names,
    thread_map,
)
from parpy.comparison._compare import MismatchError, compare
from parpy.comparison._measure import (
    WORKERS_PER_CPU,
    default_workers,
    max_workers,
    measure,
    worker_counts,
)
from parpy.comparison._shipping import WorkerLoadError
from parpy.comparison.report import Report, Skip, Timing
from parpy.comparison.workloads import CRAWL_WORKERS, TINY_CHUNKSIZES, WORKLOADS, Workload, make_ns

__all__ = [
    "BACKENDS",
    "CRAWL_WORKERS",
    "DASK_BACKENDS",
    "TOOL_BACKENDS",
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

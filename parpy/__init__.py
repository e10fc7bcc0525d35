"""parpy: real parallelism from Python.

Native kernels (exact Fibonacci on GMP, decimal conversion, ...) that release
the GIL, and executors that run whole batches of them on native threads,
side by side with threading and multiprocessing.
"""

import os as _os


def _load_core() -> None:
    """Import parpy._core, by default with GNU OpenMP's passive wait policy.

    libgomp reads its settings once, when it is loaded with the extension. Its
    default lets idle team threads spin for a while after every parallel
    region; parpy's teams sit idle between batches, where spinning takes a
    core from the Python thread, and a woken thread queued behind a spinning
    one delays a small batch by a scheduler tick (milliseconds). Unless the
    user chose a policy, the extension is loaded with OMP_WAIT_POLICY=passive,
    which is then removed again so that child processes do not inherit it.
    """
    if "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ:
        from parpy import _core  # noqa: F401

        return
    _os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        from parpy import _core  # noqa: F401
    finally:
        del _os.environ["OMP_WAIT_POLICY"]


_load_core()

from parpy import _core, lab, reference  # noqa: E402
from parpy._core import *  # noqa: E402, F403 - the kernels (parpy._core.__all__)
from parpy._core import Kernel, Queue, ShutDown, StatusError, gmp_version  # noqa: E402, F401
from parpy._version import __version__  # noqa: E402, F401
from parpy.batch import fib_batch, get_num_threads, map, set_num_threads  # noqa: E402
from parpy.comparison import MismatchError, Report, compare  # noqa: E402
from parpy.crawler import CrawlResult, crawl  # noqa: E402
from parpy.executor import ThreadPoolExecutor  # noqa: E402
from parpy.pipeline import Pipeline, PipelineStats, Stage  # noqa: E402
from parpy.pool import Pool  # noqa: E402

__all__ = [
    "CrawlResult",
    "Kernel",
    "MismatchError",
    "Pipeline",
    "PipelineStats",
    "Pool",
    "Queue",
    "Report",
    "ShutDown",
    "Stage",
    "StatusError",
    "ThreadPoolExecutor",
    "compare",
    "crawl",
    "fib_batch",
    "get_num_threads",
    "lab",
    "map",
    "reference",
    "set_num_threads",
    *_core.__all__,
]

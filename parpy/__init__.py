"""parpy: real parallelism from Python.

Native kernels (exact Fibonacci on GMP) that release the GIL, and executors
that run whole batches of them on native threads, side by side with
threading and multiprocessing.
"""

from parpy import reference
from parpy._batch import fib_batch, get_num_threads, map, set_num_threads
from parpy._core import Kernel, fib, fib_iterative, fib_mod, fib_recursive

__version__ = "0.1.0"

__all__ = [
    "Kernel",
    "fib",
    "fib_batch",
    "fib_iterative",
    "fib_mod",
    "fib_recursive",
    "get_num_threads",
    "map",
    "reference",
    "set_num_threads",
]

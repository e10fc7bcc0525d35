"""parpy.map and parpy.fib_batch: whole batches in C, the GIL released once."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from parpy import _core
from parpy._core import Kernel
from parpy._support import progress as _progress
from parpy.batch import _dask

if TYPE_CHECKING:
    from distributed import Client

# schedule= of parpy.map and Pool.map, as parpy._core takes it
SCHEDULES = {None: 0, "static": 1, "dynamic": 2, "guided": 3}
# algorithm= of parpy.fib_batch
ALGORITHMS = {
    "doubling": _core.fib,
    "iterative": _core.fib_iterative,
    "recursive": _core.fib_recursive,
}
_INT_MAX = 2**31 - 1


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if not 1 <= value <= _INT_MAX:
        raise ValueError(f"{name} must be between 1 and {_INT_MAX}, not {value}")
    return value


def set_num_threads(n: int | None) -> None:
    """Set the threads a batch uses when ``workers`` is not given.

    Parameters
    ----------
    n : int or None
        The thread count, 1 to 2**31 - 1. ``None`` restores the default:
        ``OMP_NUM_THREADS`` if set, else the CPUs this process may run on.

    Raises
    ------
    TypeError
        If ``n`` is not an int or None (bool included).
    ValueError
        If ``n`` is out of range.
    """
    _core.set_num_threads(0 if n is None else _positive_int(n, "n"))


def get_num_threads() -> int:
    """Return the threads a batch uses when ``workers`` is not given.

    Returns
    -------
    int
        The count that :func:`set_num_threads` set, or the default.
    """
    return _core.get_num_threads()


def map(  # noqa: A001 - mirrors the builtin and Pool.map
    kernel: Kernel,
    items: Iterable[object],
    *,
    workers: int | None = None,
    schedule: str | None = None,
    chunksize: int | None = None,
    progress: bool = False,
    client: Client | None = None,
    out: Any = None,
) -> Any:
    """Run a parpy kernel over ``items``; return the results in input order.

    The whole batch runs in C on OpenMP threads with the GIL released.
    Every item is validated before any work starts. Kernels of more than one
    argument (``fib_mod``) take tuples. A large input (over 16 MiB of parsed
    items: 186,000 items for ``fib``) of plain values (ints, floats, str,
    bytes, and tuples of them) is parsed twice: validated first, then
    parsed, computed and built 1 MiB of parsed items at a time, so that the
    call needs about the memory of its results.

    With a ``client``, the items, validated here first, go to the Dask
    cluster in chunks sized by estimated cost (up to 1 s, and 0.1 s or more
    but for the last few), costliest first, each a native batch on a Dask
    worker thread; results come back in input order, chunks of a worker that
    dies are rerun by Dask, an error or Ctrl-C cancels the chunks (a running
    one stops its native batch).

    Parameters
    ----------
    kernel : Kernel
        A parpy kernel (``parpy.fib``, ...) or a bound one
        (``parpy.fib_mod.bind(m)``).
    items : iterable
        The inputs, one per call (a tuple of arguments for a kernel of
        several).
    workers : int, optional
        Threads to use (default ``get_num_threads()``). With a ``client``:
        the native threads of each chunk (default 1: a Dask worker with k
        threads runs k chunks at once).
    schedule : {None, "static", "dynamic", "guided"}, optional
        As in OpenMP, with ``chunksize`` items per chunk. The default runs
        the costliest items first in chunks sized by estimated cost, which
        balances batches whose item costs differ by orders of magnitude.
        With a ``client``: the schedule inside a chunk.
    chunksize : int, optional
        Items per chunk; without a ``schedule`` it means ``"dynamic"``. With
        a ``client``: the items per Dask chunk, instead of the cost-based
        size.
    progress : bool, default False
        Show a progress bar (tqdm).
    client : distributed.Client, optional
        Run on this Dask cluster (``pip install 'parpy[dask]'``).
    out : buffer, optional
        For a user function's kernel (``Kernel.from_cfunc``): a writable
        C-contiguous buffer of its result type, as many elements as
        ``items``, to write the results into.

    Returns
    -------
    list, or a buffer
        The kernel's result for each item, in input order. A user function's
        kernel over a C-contiguous buffer of its argument type (a NumPy
        array, an ``array.array``, a ``memoryview``) computes without a
        Python object per element and returns the same kind of container
        of its result type (a ``memoryview`` over a new ``bytearray`` for a
        memoryview or any other buffer), or ``out`` when given.

    Raises
    ------
    TypeError
        If ``kernel`` is not a parpy kernel, an option has the wrong type,
        or an item is of a type the kernel does not take.
    ValueError
        If an option is out of range or an item's value is (``n < 0``).
    OverflowError
        If an item is beyond the kernel's range (``n >= 2**64``; for
        ``fib_recursive``, ``n > 93``).
    ImportError
        If ``progress=True`` without tqdm, or ``client`` without Dask.
    MemoryError
        If the results do not fit in memory.

    Notes
    -----
    A bad item raises its own exception (``TypeError``, ``ValueError``,
    ``OverflowError``, or whatever its ``__index__`` raised) with a note
    naming the kernel and the item's position, before any work starts.
    """
    if progress is False and client is None:
        # The short path, for tiny batches too: _core.map checks the kernel and the options
        # and runs the batch in one call (after the process was idle, every call and check in
        # Python costs about as much as a tiny batch's work).
        if out is None:
            return _core.map(kernel, items, workers, schedule, chunksize)
        return _core.map(kernel, items, workers, schedule, chunksize, None, None, out)
    _core.map(kernel, (), workers, schedule, chunksize)  # the kernel and options checked, in C
    show = _progress.require(progress)
    if client is not None:
        if out is not None:
            raise TypeError("parpy.map: out= runs here, not with a client")
        return _dask.map(
            kernel,
            items,
            client,
            workers=workers or 1,
            schedule=SCHEDULES[schedule],
            chunksize=chunksize or 0,
            progress=show,
        )
    return _map_with_progress(kernel, items, workers, schedule, chunksize, out)


def _map_with_progress(
    kernel: Kernel,
    items: Iterable[object],
    workers: int | None,
    schedule: str | None,
    chunksize: int | None,
    out: Any = None,
) -> Any:
    """parpy.map with a progress bar, which starts once every item is valid."""
    control = _core.Control()
    bars: list[_progress.Progress] = []
    try:
        return _core.map(
            kernel,
            items,
            workers,
            schedule,
            chunksize,
            control,
            lambda total: bars.append(_progress.Progress(control, total, "map")),
            out,
        )
    finally:
        for bar in bars:
            bar.close()


def fib_batch(
    ns: Iterable[int],
    *,
    workers: int | None = None,
    schedule: str | None = None,
    chunksize: int | None = None,
    algorithm: str = "doubling",
    progress: bool = False,
    client: Client | None = None,
) -> list[int]:
    """Return ``[F(n) for n in ns]``, computed in parallel in C.

    Parameters
    ----------
    ns : iterable of int
        The n of each Fibonacci number, each >= 0.
    workers : int, optional
        As in :func:`parpy.map`.
    schedule : {None, "static", "dynamic", "guided"}, optional
        As in :func:`parpy.map`.
    chunksize : int, optional
        As in :func:`parpy.map`.
    algorithm : {"doubling", "iterative", "recursive"}, default "doubling"
        ``parpy.fib``, ``parpy.fib_iterative`` or ``parpy.fib_recursive``.
    progress : bool, default False
        Show a progress bar (tqdm).
    client : distributed.Client, optional
        Run on this Dask cluster, as in :func:`parpy.map`.

    Returns
    -------
    list of int
        F(n) for each n, in input order.

    Raises
    ------
    ValueError
        If ``algorithm`` is not one of the three, or an n is negative.
    TypeError
        If an n is not an int (bool and float included).
    OverflowError
        If an n is ``>= 2**64`` (for ``"recursive"``, ``> 93``).

    See Also
    --------
    map : The other errors, those of the batch.
    """
    try:
        kernel = ALGORITHMS[algorithm]
    except (KeyError, TypeError):
        choices = ", ".join(builtins.map(repr, ALGORITHMS))
        raise ValueError(f"algorithm must be one of {choices}, not {algorithm!r}") from None
    if progress is False and client is None:  # map's short path, one call less
        return _core.map(kernel, ns, workers, schedule, chunksize)
    return map(
        kernel,
        ns,
        workers=workers,
        schedule=schedule,
        chunksize=chunksize,
        progress=progress,
        client=client,
    )

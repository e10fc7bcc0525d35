"""parpy.map(kernel, items, client=...): a batch on a Dask cluster.

parpy builds no cluster: it cuts the batch into chunks and gives them to a
``distributed.Client``. Every item is parsed and validated here first, by
the same native batch that parpy.map runs locally, so a bad item raises at
once, naming its position, before anything is sent. The kernel's cost model
then sizes the chunks (``plan``): contiguous runs of the input, each about
half the estimated work left per Dask thread and at most 1 s, so 0.1 s or
more until the last 0.2 s of each thread, where they shrink to 20 ms (Dask
spends a few milliseconds on each task; a last chunk of 0.1 s left a thread
idle for that long while the other finished). They are submitted costliest
first with ``pure=False`` (Dask would otherwise give an identical call its
cached result).

A chunk ships the kernel (kernels pickle by name, with their bound
arguments) and its Python items. On the worker it is one native batch
(``_run_chunk``) on ``workers`` native threads, by default one: a Dask
worker with k threads runs k chunks at once, each on its own thread with the
GIL released, never k chunks of k threads each; the plan makes enough
chunks for every thread. The chunk's batch knows where it starts in the
input, so an item's exception carries the same note as on the local path
("parpy.fib: items[i]", i in the whole input) besides the worker's
traceback. Dask reruns the chunks of a worker that dies; results are put
back in input order as the chunks arrive. The first chunk to fail, or
Ctrl-C, cancels what is left (``client.cancel``) before raising; a chunk
already running on a worker sees that within about 20 ms (a thread beside
its batch watches the task's state on the worker) and cancels its native
batch (``_core.Cancelled``).
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from parpy import _core
from parpy._core import Kernel
from parpy._support import progress as _progress
from parpy._support.dask import require, threads

__all__ = ["map", "plan"]

# Nanoseconds an item costs beyond the kernel's estimate of its compute:
# parsing it, building its result and pickling both ways. Measured on
# x86-64 (CPython 3.11): 100-200 ns in the batch and about 100 ns of pickle
# for a small int. Without it a batch of 10,000 tiny items would be
# estimated at 50 us instead of the 3 ms it takes.
_ITEM_NS = 300.0
# Wall time of one chunk. Dask spends 2-5 ms on each task on a LocalCluster
# (from one chunk's end to the next one's start on a worker thread).
_CHUNK_MIN_NS = 2e7
_CHUNK_MAX_NS = 1e9


def plan(costs: Sequence[float], slots: int, workers: int = 1) -> list[tuple[int, int]]:
    """Cut items ``[0, len(costs))`` into chunks ``(start, stop)``, costliest first.

    ``costs``: the estimated nanoseconds of each item (``Batch.costs()``);
    ``slots``: the Dask threads that run chunks at once; ``workers``: the
    native threads of each chunk. As the local default schedule, guided by
    cost: a chunk is about half the work left per slot, within 20 ms and 1 s
    of wall time, so chunks shrink towards the end of the input.
    """
    n = len(costs)
    prefix = [0.0, *itertools.accumulate(costs)]

    def done(k: int) -> float:  # estimated cost of items[:k]
        return prefix[k] + k * _ITEM_NS

    chunks: list[tuple[int, int]] = []
    start = 0
    while start < n:
        per_slot = (done(n) - done(start)) / (slots * workers)
        target = min(max(per_slot / 2, _CHUNK_MIN_NS), _CHUNK_MAX_NS) * workers
        # the shortest chunk that reaches the target, and the rest if under half a chunk
        ends = range(start + 1, n + 1)
        stop = ends[min(bisect.bisect_left(ends, done(start) + target, key=done), len(ends) - 1)]
        if done(n) - done(stop) < target / 2:
            stop = n
        chunks.append((start, stop))
        start = stop
    chunks.sort(key=lambda chunk: done(chunk[0]) - done(chunk[1]))
    return chunks


class _Results:
    """A chunk's results, in one object. Dask sends a list or tuple back item
    by item (about 15 us each: a batch of 10,000 small ints took 0.3 s); an
    object is pickled whole."""

    __slots__ = ("values",)

    def __init__(self, values: list[Any]) -> None:
        self.values = values


# How often a running chunk looks whether the client cancelled its task.
_WATCH_S = 0.02


def _run_chunk(
    kernel: Kernel, items: Sequence[object], start: int, threads: int, schedule: int
) -> _Results:
    """A Dask task: items, which start at ``start`` in the input, as one native batch."""
    import distributed

    worker = distributed.get_worker()
    key = worker.get_current_task()
    control = _core.Control()
    batch = _core.Batch(
        kernel, items, workers=threads, schedule=schedule, start=start, control=control
    )
    done = threading.Event()

    def watch() -> None:  # the task's state is the worker's: read, never changed, here
        while not done.wait(_WATCH_S):
            task = worker.state.tasks.get(key)
            if task is None or task.state in ("cancelled", "released", "forgotten"):
                control.cancel()
                return

    watcher = threading.Thread(target=watch, name=f"parpy-watch-{key}", daemon=True)
    watcher.start()
    try:
        return _Results(batch.run())
    finally:
        done.set()
        watcher.join()


def map(  # noqa: A001 - parpy.map's Dask path
    kernel: Kernel,
    items: Iterable[object],
    client: Any,
    *,
    workers: int,
    schedule: int,
    chunksize: int,
    progress: bool,
) -> list[Any]:
    """parpy.map with ``client``: see the module docstring.

    ``workers``: native threads of each chunk; ``schedule``: the native
    schedule inside a chunk; ``chunksize``: items per chunk (0: by cost).
    """
    distributed = require(client)
    if not isinstance(items, (list, tuple)):
        items = list(items)
    # Every item parsed and validated here: a bad one raises now, naming its position.
    costs = _core.Batch(kernel, items).costs()
    n = len(costs)
    if n == 0:
        return []
    if chunksize:
        chunks = [(a, min(a + chunksize, n)) for a in range(0, n, chunksize)]
    else:
        chunks = plan(costs, threads(client), workers)
    # Positional: client.map's keywords (workers=) are its own.
    futures = client.map(
        _run_chunk,
        [kernel] * len(chunks),
        [items[a:b] for a, b in chunks],
        [a for a, _ in chunks],
        [workers] * len(chunks),
        [schedule] * len(chunks),
        key=f"parpy.{kernel.__name__}",
        pure=False,
    )
    bar = _progress.bar(n, "map") if progress else None
    try:
        return _gather(distributed, client, futures, chunks, n, bar)
    except BaseException:  # a chunk failed, or Ctrl-C: nothing is left running for us
        client.cancel(futures)
        raise
    finally:
        if bar is not None:
            bar.close()


def _gather(
    distributed: Any,
    client: Any,
    futures: list[Any],
    chunks: list[tuple[int, int]],
    n: int,
    bar: Any,
) -> list[Any]:
    """The chunks' results in input order, as they arrive; the first failure raised."""
    where = {future.key: chunk for future, chunk in zip(futures, chunks, strict=True)}
    results: list[Any] = [None] * n
    # On the client's own event loop: as_completed takes the default client's
    # otherwise, another thread's where there are several clients (its
    # streams then break), none where there is no default client.
    arriving = distributed.as_completed(
        futures, loop=client.loop, with_results=True, raise_errors=False
    )
    for future, outcome in arriving:
        a, b = where[future.key]
        if future.status != "finished":
            # "error": (type, exception, the worker's traceback); "cancelled": the exception
            exc = outcome[1].with_traceback(outcome[2]) if future.status == "error" else outcome
            exc.add_note(f"parpy.map: the chunk items[{a}:{b}] on Dask ({future.key})")
            raise exc
        results[a:b] = outcome.values
        if bar is not None:
            bar.update(b - a)
    return results

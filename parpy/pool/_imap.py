"""The imap engine of parpy.Pool: ``imap`` and ``imap_unordered``.

The input is read lazily: chunks are submitted while fewer than ``window``
of them wait to be consumed, so an endless input runs in bounded memory,
and the window is what the workers can use (a couple of chunks per worker,
and no more than about ``READ_AHEAD`` items). A chunk of a parpy kernel is a
native batch with one outcome per item: each item gets its own value or
exception. Chunks of a kernel grow 1, 2, 4, ... items (results come early,
and later chunks amortise their overhead). A chunk of a Python callable is
a task of the work queue; when a chunk of more than one item fails, as in
the stdlib, iteration ends after its exception.

Every chunk completes through ``_Results._set(i, (ok, value))``, the one
completion protocol of the pool. Queued chunks hold the ``_Results``, not the
iterator: an iterator its consumer dropped goes away at once, and then
``ended`` makes the queued chunks no-ops. Finished chunks go through a deque
(append and popleft are atomic): no lock that a thread could hold while it
waits for the GIL. ``cond`` is used only when the consumer has to sleep.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from typing import TYPE_CHECKING, Any

from parpy import _core
from parpy._support import progress as _progress
from parpy._support.dispatch import kernel_for

if TYPE_CHECKING:
    from parpy.pool import Pool

__all__ = ["IMapIterator"]

# Items read ahead of the consumer, beyond those the workers compute: enough
# that Python callables, which share the GIL with the consumer, take turns
# with it once per thousands of items; small enough that a consumer who
# stops early has not made the input run far ahead.
READ_AHEAD = 4096
# A kernel's chunks grow up to this many items.
KERNEL_CHUNK_MAX = 1024


def terminated() -> RuntimeError:
    return RuntimeError("the pool was terminated before this task finished")


def forked() -> RuntimeError:
    return RuntimeError(
        "this task was given to the pool before this process was forked: it is the parent's"
    )


class _Results:
    """The workers' side of one imap call: runs Python chunks, receives the
    outcome of every chunk."""

    def __init__(self, func: Callable[..., Any], control: _core.Control, counting: bool) -> None:
        self.func = func
        self.control = control
        self.counting = counting  # a progress bar follows control.done
        self.finished: collections.deque[tuple[int, bool, Any]] = collections.deque()
        self.cond = threading.Condition(threading.Lock())
        self.waiting = False  # the consumer sleeps on cond
        self.ended = False  # terminated, dropped, or ended by a failed chunk
        self.end_error = terminated  # what a consumer gets once ended

    def run(self, chunk: list[Any]) -> list[Any] | None:
        """Computes one chunk of a Python callable (a worker's task)."""
        if self.ended:
            return None
        func = self.func
        if len(chunk) == 1:  # imap's default: the per-item path, kept short
            values = [func(chunk[0])]
        else:
            values = []
            append = values.append
            for x in chunk:
                if self.ended:
                    return None
                append(func(x))
        if self.counting:
            self.control.add(len(values))
        return values

    def _set(self, index: int, outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        if (
            not ok
            and isinstance(value, list)
            and any(isinstance(v, _core.Cancelled) for v in value)
        ):
            value = terminated()  # the native chunk was cancelled by terminate()
        self.finished.append((index, ok, value))
        if self.waiting:
            self.wake()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def end(self) -> None:
        """No more chunks are wanted (terminated, or the iterator dropped)."""
        self.ended = True
        self.wake()

    def disown(self) -> None:
        """In a forked child, alone: ended, with a lock of its own."""
        self.cond = threading.Condition(threading.Lock())
        self.waiting = False
        self.ended = True
        self.end_error = forked


class IMapIterator:
    """The iterator of ``imap``/``imap_unordered``."""

    def __init__(
        self,
        pool: Pool,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
        bar: _progress.Progress | None,
        control: _core.Control,
    ) -> None:
        self._pool = pool
        self._results = _Results(func, control, bar is not None)
        self._kernel = kernel_for(func, 1)
        self._input = iter(iterable)
        self._chunksize = chunksize
        self._grow = self._kernel is not None and chunksize == 1
        self._ordered = ordered
        self._bar = bar
        chunks_per_worker = 2
        if self._grow:
            largest = max(
                1, min(KERNEL_CHUNK_MAX, READ_AHEAD // (chunks_per_worker * pool._processes))
            )
        else:
            largest = chunksize
        self._largest = largest
        self._window = max(chunks_per_worker * pool._processes, READ_AHEAD // largest)
        self._feed_lock = threading.Lock()
        self._submitted = 0  # chunks submitted
        self._read = 0  # items read from the input
        self._length: int | None = None  # chunks in all, once the input is exhausted
        self._consumed = 0  # chunks taken by the consumer
        self._consumer_lock = threading.Lock()  # one consumer at a time in _advance
        self._done: dict[int, tuple[bool, Any]] = {}  # imap's: finished, waiting for their turn
        self._current: Iterator[Any] = iter(())
        self._raise_all = False  # the current chunk holds exceptions in place of values

    # -- feeding (the consumer's thread, or join()) ---------------------------

    def _feed(self, window: int | None) -> None:
        """Submit chunks until window of them are ahead of the consumer."""
        results = self._results
        submit, islice = self._pool._queue.submit, itertools.islice
        kernel, control = self._kernel, results.control
        with self._feed_lock:
            while self._length is None and not results.ended:
                index = self._submitted
                if window is not None and index - self._consumed >= window:
                    return
                size = self._chunksize
                if self._grow:
                    size = min(1 << min(index, 20), self._largest)
                try:
                    chunk = list(islice(self._input, size))
                except BaseException as exc:
                    results._set(index, (False, exc))
                    self._length = index + 1
                    break
                if not chunk:
                    self._length = index
                    break
                self._submitted = index + 1
                start, self._read = self._read, self._read + len(chunk)
                try:
                    if kernel is not None:
                        task = _core.Batch(
                            kernel, chunk, control=control, outcomes=True, start=start
                        )
                        submit(results, index, task)
                    else:
                        submit(results, index, results.run, (chunk,))
                except RuntimeError:  # the pool was terminated
                    results._set(index, (False, terminated()))
                    self._length = index + 1
                    break
        # The input is exhausted (or failed), or the pool was terminated.
        self._pool._feeder_finished(self)
        results.wake()

    def _disown(self) -> None:
        """In a forked child, alone: the chunks are the parent's; the next
        ``next()`` ends the iteration with the pool's error."""
        self._feed_lock = threading.Lock()
        self._consumer_lock = threading.Lock()
        self._results.disown()

    # -- consumer ------------------------------------------------------------

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        while True:
            for value in self._current:
                if self._raise_all and isinstance(value, BaseException):
                    raise value
                return value
            self._advance(timeout)

    __next__ = next

    def _advance(self, timeout: float | None) -> None:
        """Make the next finished chunk current, feeding the workers first.
        Raises StopIteration at the end, TimeoutError after timeout."""
        if self._submitted - self._consumed <= self._window // 2:
            self._feed(self._window)  # refill in bursts: fewer trips through the lock
        results = self._results
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._consumer_lock:
            while not self._load_chunk():
                if self._length is not None and self._consumed >= self._length:
                    self._close()
                    raise StopIteration
                if results.ended:
                    self._close()
                    raise results.end_error()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                with results.cond:
                    # A worker appends, then looks at waiting: either it sees
                    # it set and wakes us, or we see what it appended.
                    results.waiting = True
                    try:
                        if not results.finished and not results.ended:
                            results.cond.wait(left)
                    finally:
                        results.waiting = False

    def _take(self) -> tuple[bool, Any] | None:
        """The next finished chunk to consume, if there is one: the next in
        input order (imap), or the first to finish (imap_unordered)."""
        finished = self._results.finished
        if not self._ordered:
            return finished.popleft()[1:] if finished else None
        done = self._done
        while finished:
            index, ok, value = finished.popleft()
            done[index] = (ok, value)
        return done.pop(self._consumed, None)

    def _load_chunk(self) -> bool:
        """Make the next finished chunk current, together with the successful
        chunks that follow it (fewer trips through _advance per item). Called
        by the consumer, with _consumer_lock held."""
        outcome = self._take()
        if outcome is None:
            return False
        ok, value = outcome
        self._consumed += 1
        self._raise_all = not ok
        if not ok and not isinstance(value, list):
            # A whole chunk failed. Chunks of one item go on; for larger ones
            # the stdlib's chained iterator ends here.
            value = [value]
            if self._chunksize > 1 and self._kernel is None:
                self._length = self._consumed
                self._results.end()
        elif ok:
            runs = [value]
            while (outcome := self._take()) is not None:
                if not outcome[0]:
                    self._put_back(outcome)
                    break
                runs.append(outcome[1])
                self._consumed += 1
            if len(runs) > 1:
                value = itertools.chain.from_iterable(runs)
        self._current = iter(value)
        return True

    def _put_back(self, outcome: tuple[bool, Any]) -> None:
        if self._ordered:
            self._done[self._consumed] = outcome
        else:
            self._results.finished.appendleft((self._consumed, *outcome))

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def dropped(results: _Results, feeder_finished: Callable[[None], None]) -> None:
    """An iterator went away before its end: its queued chunks are skipped."""
    results.end()
    feeder_finished(None)

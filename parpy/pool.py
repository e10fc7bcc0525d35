"""parpy.Pool: multiprocessing.Pool's API on native threads.

The semantics are those of ``multiprocessing.pool.ThreadPool`` (same
methods, results, exceptions with the worker's traceback, lifecycle). The
workers are threads waiting on parpy's native work queue. A parpy kernel
passed as ``func`` runs the whole batch in C with the GIL released once
(``map``, ``starmap`` and their ``_async`` forms), or chunk by chunk
(``imap``, ``imap_unordered``); a Python callable runs on the workers with
the GIL taken per call, ``chunksize`` items per task.

Differences from the stdlib, all stated in the README: ``imap`` and
``imap_unordered`` read their input lazily (a bounded window ahead of the
consumer) instead of all at once; callbacks run on the worker thread that
finished the task; results still pending when the pool is terminated fail
with RuntimeError instead of never completing; a failing initializer breaks
the pool instead of restarting workers forever.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import operator
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError
from typing import Any

from parpy import _core, _progress
from parpy._batch import _SCHEDULES, get_num_threads
from parpy._core import Kernel

__all__ = ["AsyncResult", "Pool", "TimeoutError"]

INIT, RUN, CLOSE, TERMINATE = "INIT", "RUN", "CLOSE", "TERMINATE"

_job_counter = itertools.count()
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
_worker_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # of every pool

# kernel chunks of imap/imap_unordered grow 1, 2, 4, ... up to this
_KERNEL_CHUNK_MAX = 1024
# imap keeps at most this many items (and chunks) submitted ahead of the
# consumer. A wide window matters for Python callables: the consumer and the
# workers then take turns with the GIL once per half window, not per item.
_WINDOW_ITEMS = 65536
_WINDOW_CHUNKS = 1024


def _terminated() -> RuntimeError:
    return RuntimeError("the pool was terminated before this task finished")


class ApplyResult:
    """The result of ``apply_async``: ``get``, ``wait``, ``ready``, ``successful``."""

    def __init__(
        self,
        pool: Pool,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
    ) -> None:
        self._event = threading.Event()
        self._job = next(_job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._success = False
        self._value: Any = None
        self._finished = False
        self._lock = threading.Lock()
        self._control: _core.Control | None = None  # for a kernel: cancelled by terminate
        self._cache[self._job] = self

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _finish(self, success: bool, value: Any) -> None:
        """Record the outcome once, run the callback, then wake get()."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        self._success, self._value = success, value
        try:
            if success and self._callback is not None:
                self._callback(value)
            elif not success and self._error_callback is not None:
                self._error_callback(value)
        finally:
            self._event.set()
            self._cache.pop(self._job, None)

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwds: dict[str, Any]) -> None:
        try:
            control = self._control  # set for a kernel: terminate cancels it
            if isinstance(func, Kernel) and control and not kwds and len(args) == func.arity:
                value = _core.call(func, args, control)
            else:
                value = func(*args, **kwds)
        except BaseException as exc:
            self._finish(False, exc)
        else:
            self._finish(True, value)

    def _cancel(self) -> None:
        """Stop what is left of this call's work (terminate, Ctrl-C)."""
        self._finish(False, _terminated())


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: a list in input order."""

    def __init__(
        self,
        pool: Pool,
        chunksize: int,
        length: int,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        control: _core.Control,
        bar: _progress.Progress | None,
    ) -> None:
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        self._control = control
        self._bar = bar
        self._error: BaseException | None = None
        if chunksize <= 0:  # an empty input: ready at once, no callback (as the stdlib)
            self._number_left = 0
            self._finished = True
            self._close_bar()
            self._event.set()
            del self._cache[self._job]
        else:
            self._number_left = length // chunksize + bool(length % chunksize)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _finish(self, success: bool, value: Any) -> None:
        if not success and self._control is not None:
            self._control.cancel()  # the rest of the work is not needed
        self._close_bar()
        super()._finish(success, value)

    def _run_chunk(self, i: int, func: Callable[..., Any], chunk: list[Any], star: bool) -> None:
        values: list[Any] = []
        append = values.append
        try:
            for x in chunk:
                if self._finished:  # terminated, or abandoned by Ctrl-C
                    return
                append(func(*x) if star else func(x))
        except BaseException as exc:
            self._set_chunk(i, None, exc)
            return
        if self._control is not None:
            self._control.add(len(values))
        self._set_chunk(i, values)

    def _set_chunk(
        self, i: int, values: list[Any] | None, error: BaseException | None = None
    ) -> None:
        # As the stdlib's MapResult: the first error is the outcome, reported
        # once every chunk has finished or been skipped (no fail-fast).
        size = self._chunksize
        with self._lock:
            if self._finished:
                return
            if error is not None and self._error is None:
                self._error = error
            elif values is not None:
                self._value[i * size : i * size + len(values)] = values
            self._number_left -= 1
            last = self._number_left == 0
        if last:
            if self._error is not None:
                self._finish(False, self._error)
            else:
                self._finish(True, self._value)

    def _run_batch(self, kernel: Kernel, items: Any, workers: int, chunksize: int) -> None:
        # as parpy.map: a chunksize means OpenMP's dynamic schedule
        schedule = _SCHEDULES["dynamic" if chunksize else None]
        try:
            values = _core.run_batch(kernel, items, workers, schedule, chunksize, self._control)
        except BaseException as exc:
            self._finish(False, exc)
        else:
            self._finish(True, values)


class _ChunkRunner:
    """The workers' side of an imap call: runs chunks and hands them over.

    Queued chunks hold this, not the iterator: an iterator its consumer
    dropped goes away at once (and then ``ended`` makes the queued chunks
    no-ops). Finished chunks go through a deque (append and popleft are
    atomic): no lock that a thread could hold while it waits for the GIL,
    which would make the others queue behind it. ``cond`` is used only when
    the consumer has to sleep.
    """

    def __init__(self, func: Callable[..., Any], control: _core.Control, counting: bool) -> None:
        self.func = func
        self.kernel = func if isinstance(func, Kernel) and func.arity == 1 else None
        self.control = control
        self.counting = counting  # a progress bar follows control.done
        self.finished: collections.deque[tuple[int, str, Any]] = collections.deque()
        self.cond = threading.Condition(threading.Lock())
        self.waiting = False  # the consumer sleeps on cond
        self.ended = False  # terminated, dropped, or ended by a failed chunk

    def run(self, index: int, chunk: list[Any]) -> None:
        """Computes one chunk (a worker's task)."""
        if self.ended:
            return
        func, kernel, control = self.func, self.kernel, self.control
        if kernel is not None:
            try:
                batch = _core.run_batch(kernel, chunk, 1, 0, 0, control)
            except Exception:
                if control.cancelled:
                    self.set(index, "raise", _terminated())
                    return
                outcome = [_call_one(kernel, x) for x in chunk]
                control.add(len(chunk))
                self.set(index, "items", outcome)
            else:
                self.set(index, "values", batch)
            return
        if len(chunk) == 1:  # imap's default: the per-item path, kept short
            try:
                value = func(chunk[0])
            except BaseException as exc:
                self.set(index, "raise", exc)
                return
            if self.counting:
                control.add(1)
            self.set(index, "values", [value])
            return
        values: list[Any] = []
        append = values.append
        try:
            for x in chunk:
                if self.ended:
                    return
                append(func(x))
        except BaseException as exc:
            self.set(index, "raise", exc)
            return
        if self.counting:
            control.add(len(values))
        self.set(index, "values", values)

    def set(self, index: int, kind: str, value: Any) -> None:
        self.finished.append((index, kind, value))
        if self.waiting:
            self.wake()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def end(self) -> None:
        """No more chunks are wanted (terminated, or the iterator dropped)."""
        self.ended = True
        self.wake()


class IMapIterator:
    """The iterator of ``imap``/``imap_unordered``.

    Input is read lazily: chunks are submitted while fewer than ``window``
    of them wait to be consumed, so an endless input runs in bounded memory.
    A chunk's outcome is a list of values, or an exception for the whole
    chunk (a chunk of more than one item of a Python callable: as in the
    stdlib, iteration ends after it is raised). A kernel chunk that fails is
    recomputed item by item, so every item gets its own value or exception.
    """

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
        self._runner = _ChunkRunner(func, control, bar is not None)
        self._input = iter(iterable)
        self._chunksize = chunksize
        self._grow = self._runner.kernel is not None and chunksize == 1
        self._ordered = ordered
        self._bar = bar
        largest = _KERNEL_CHUNK_MAX if self._grow else chunksize
        self._window = max(2 * pool._processes, min(_WINDOW_CHUNKS, _WINDOW_ITEMS // largest))
        self._feed_lock = threading.Lock()
        self._submitted = 0  # chunks submitted
        self._length: int | None = None  # chunks in all, once the input is exhausted
        self._consumed = 0  # chunks taken by the consumer
        self._consumer_lock = threading.Lock()  # one consumer at a time in _advance
        self._done: dict[int, tuple[str, Any]] = {}  # imap's: finished, waiting for their turn
        self._current: Iterator[Any] = iter(())
        self._pairs = False

    # -- feeding (the consumer's thread, or join()) ---------------------------

    def _feed(self, window: int | None) -> None:
        """Submit chunks until window of them are ahead of the consumer."""
        runner = self._runner
        submit, islice = self._pool._queue.submit, itertools.islice
        with self._feed_lock:
            while self._length is None and not runner.ended:
                index = self._submitted
                if window is not None and index - self._consumed >= window:
                    return
                size = self._chunksize
                if self._grow:
                    size = min(1 << min(index, 10), _KERNEL_CHUNK_MAX)
                try:
                    chunk = list(islice(self._input, size))
                except BaseException as exc:
                    runner.set(index, "raise", exc)
                    self._length = index + 1
                    break
                if not chunk:
                    self._length = index
                    break
                self._submitted = index + 1
                try:
                    submit(None, runner.run, (index, chunk), None)
                except RuntimeError:  # the pool was terminated
                    runner.set(index, "raise", _terminated())
                    self._length = index + 1
                    break
        # The input is exhausted (or failed), or the pool was terminated.
        self._pool._feeder_finished(self)
        runner.wake()

    # -- consumer ------------------------------------------------------------

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        while True:
            # The chunk being consumed: plain values, or (ok, value) pairs.
            for value in self._current:
                if not self._pairs:
                    return value
                ok, value = value
                if ok:
                    return value
                raise value
            self._advance(timeout)

    __next__ = next

    def _advance(self, timeout: float | None) -> None:
        """Make the next finished chunk current, feeding the workers first.
        Raises StopIteration at the end, TimeoutError after timeout."""
        if self._submitted - self._consumed <= self._window // 2:
            self._feed(self._window)  # refill in bursts: fewer trips through the lock
        runner = self._runner
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._consumer_lock:
            while not self._load_chunk():
                if self._length is not None and self._consumed >= self._length:
                    self._close()
                    raise StopIteration
                if runner.ended:
                    self._close()
                    raise _terminated()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                with runner.cond:
                    # A worker appends, then looks at waiting: either it sees
                    # it set and wakes us, or we see what it appended.
                    runner.waiting = True
                    try:
                        if not runner.finished and not runner.ended:
                            runner.cond.wait(left)
                    finally:
                        runner.waiting = False

    def _take(self) -> tuple[int, str, Any] | None:
        """The next finished chunk to consume, if there is one: the next in
        input order (imap), or the first to finish (imap_unordered)."""
        finished = self._runner.finished
        if not self._ordered:
            return finished.popleft() if finished else None
        done = self._done
        while finished:
            index, kind, value = finished.popleft()
            done[index] = (kind, value)
        entry = done.pop(self._consumed, None)
        return None if entry is None else (self._consumed, *entry)

    def _put_back(self, entry: tuple[int, str, Any]) -> None:
        if self._ordered:
            self._done[entry[0]] = entry[1:]
        else:
            self._runner.finished.appendleft(entry)

    def _load_chunk(self) -> bool:
        """Make the next finished chunk current, together with the plain-value
        chunks that can follow it (fewer trips through _advance per item).
        Called by the consumer, with _consumer_lock held."""
        entry = self._take()
        if entry is None:
            return False
        _, kind, value = entry
        self._consumed += 1
        self._pairs = kind != "values"
        if kind == "raise":
            value = [(False, value)]
            if self._chunksize > 1:  # the stdlib's chained iterator ends here
                self._length = self._consumed
                self._runner.end()
        elif kind == "values":
            runs = [value]
            while (entry := self._take()) is not None:
                if entry[1] != "values":
                    self._put_back(entry)
                    break
                runs.append(entry[2])
                self._consumed += 1
            if len(runs) > 1:
                value = itertools.chain.from_iterable(runs)
        self._current = iter(value)
        return True

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _dropped(runner: _ChunkRunner, feeder_finished: Callable[[None], None]) -> None:
    runner.end()
    feeder_finished(None)


def _call_one(func: Callable[[Any], Any], x: Any) -> tuple[bool, Any]:
    try:
        return True, func(x)
    except Exception as exc:
        return False, exc


def _worker(
    queue: _core.WorkQueue,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    maxtasks: int,
    pool_ref: weakref.ref[Pool],
) -> None:
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            pool = pool_ref()
            if pool is not None:
                pool._initializer_failed(exc)
            return
    if queue.run(maxtasks):
        # maxtasksperchild reached: a fresh thread (and initializer) takes over
        pool = pool_ref()
        if pool is not None:
            pool._replace_worker()


class Pool:
    """multiprocessing.Pool on native threads: see the module docstring."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        maxtasksperchild: int | None = None,
    ) -> None:
        self._state = INIT
        self._queue = _core.WorkQueue()
        if processes is None:
            processes = get_num_threads()
        processes = operator.index(processes)
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasks = maxtasksperchild or 0
        self._cache: dict[int, Any] = {}
        self._controls: weakref.WeakSet[_core.Control] = weakref.WeakSet()
        # imap iterators (held weakly: one the consumer dropped goes away),
        # and those still reading their input, which keeps the queue open
        self._iterators: weakref.WeakSet[IMapIterator] = weakref.WeakSet()
        self._feeders: weakref.WeakSet[IMapIterator] = weakref.WeakSet()
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._thread_numbers = itertools.count()
        self._broken: BaseException | None = None
        for _ in range(processes):
            self._start_worker()
        self._state = RUN
        _live_pools.add(self)

    # -- workers -------------------------------------------------------------

    def _start_worker(self) -> None:
        thread = threading.Thread(
            name=f"parpy.Pool-{id(self):x}-worker-{next(self._thread_numbers)}",
            target=_worker,
            args=(
                self._queue,
                self._initializer,
                self._initargs,
                self._maxtasks,
                weakref.ref(self),
            ),
            daemon=True,
        )
        with self._lock:
            # maxtasksperchild replaces threads: forget those that left
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        _worker_threads.add(thread)
        thread.start()

    def _replace_worker(self) -> None:
        with self._lock:
            if self._state in (RUN, CLOSE) and self._broken is None:
                self._start_worker()

    def _initializer_failed(self, exc: BaseException) -> None:
        with self._lock:
            if self._broken is not None:
                return
            error = RuntimeError("parpy.Pool: a worker's initializer failed")
            error.__cause__ = exc
            self._broken = error
        self._queue.stop()
        self._fail_pending(error)

    def _fail_pending(self, error: BaseException) -> None:
        for control in list(self._controls):
            control.cancel()
        for iterator in list(self._iterators):
            iterator._runner.end()
        for result in list(self._cache.values()):
            result._finish(False, error)

    def _submit(self, fn: Callable[..., None], args: tuple[Any, ...]) -> bool:
        """Queue a call; False if the pool no longer takes work."""
        try:
            self._queue.submit(None, fn, args, None)
        except RuntimeError:
            return False
        return True

    def _check_running(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _new_control(self) -> _core.Control:
        control = _core.Control()
        self._controls.add(control)
        return control

    # -- apply ----------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwds: dict[str, Any] = {},  # noqa: B006
    ) -> Any:
        """Call ``func(*args, **kwds)`` on a worker and return its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwds: dict[str, Any] = {},  # noqa: B006 - the stdlib's signature
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> ApplyResult:
        """Call ``func(*args, **kwds)`` on a worker; return an AsyncResult."""
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        if isinstance(func, Kernel):
            result._control = self._new_control()
        if not self._submit(result._run, (func, args, kwds)):
            result._cancel()
        return result

    # -- map ------------------------------------------------------------------

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        progress: bool = False,
    ) -> list[Any]:
        """Return ``[func(x) for x in iterable]``, computed by the workers.

        A parpy kernel runs the whole batch in C with the GIL released once
        (``chunksize`` then means OpenMP's dynamic schedule with chunks of
        that size; by default chunks are sized by estimated cost).
        """
        return self._map(func, iterable, chunksize, False, progress)

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        progress: bool = False,
    ) -> list[Any]:
        """Like :meth:`map`, with each item unpacked as arguments: ``func(*x)``."""
        return self._map(func, iterable, chunksize, True, progress)

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        progress: bool = False,
    ) -> MapResult:
        """Asynchronous :meth:`map`: return an AsyncResult of the list."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback, progress)

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        progress: bool = False,
    ) -> MapResult:
        """Asynchronous :meth:`starmap`: return an AsyncResult of the list."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback, progress)

    @staticmethod
    def _native(func: object, star: bool) -> Kernel | None:
        """func, if it runs as one native batch: a kernel taking each item as
        its single argument (map), or each item's values as its arguments
        (starmap of a kernel of several arguments); else None."""
        if isinstance(func, Kernel) and (func.arity > 1 if star else func.arity == 1):
            return func
        return None

    def _map(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        star: bool,
        progress: bool,
    ) -> list[Any]:
        # A kernel's batch runs right here, on the calling thread (Ctrl-C
        # cancels it); Python calls go to the workers.
        result = self._map_async(func, iterable, chunksize, star, None, None, progress, True)
        try:
            return result.get()
        except KeyboardInterrupt:
            result._cancel()
            raise

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        star: bool,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        progress: bool,
        inline: bool = False,
    ) -> MapResult:
        self._check_running()
        show = _progress.require(progress)
        items = iterable if hasattr(iterable, "__len__") else tuple(iterable)
        n = len(items)  # type: ignore[arg-type]
        kernel = self._native(func, star)
        if kernel is not None:
            size = 1  # the whole batch is one task
            chunk = _chunksize(chunksize)
        elif chunksize is None:
            size, extra = divmod(n, self._processes * 4)
            size += bool(extra)
        else:
            size = _chunksize(chunksize)
        control = self._new_control()
        bar = _progress.start(show, control, n, "map")
        length = n if kernel is None else min(n, 1)  # a batch is one task
        result = MapResult(self, size if n else 0, length, callback, error_callback, control, bar)
        if n == 0:
            return result
        if kernel is not None:
            if inline:
                result._run_batch(kernel, items, self._processes, chunk)
                return result
            args = (kernel, tuple(items), self._processes, chunk)  # a snapshot of the items now
            submitted = self._submit(result._run_batch, args)
        else:
            seq = items if isinstance(items, (list, tuple)) else list(items)
            submitted = all(
                self._submit(result._run_chunk, (i // size, func, seq[i : i + size], star))
                for i in range(0, n, size)
            )
        if not submitted:
            result._cancel()
        return result

    # -- imap -----------------------------------------------------------------

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        progress: bool = False,
    ) -> IMapIterator:
        """Lazy :meth:`map`: an iterator of results in input order.

        Results come back while later ones are still computed; the input is
        read as the results are consumed (a bounded window ahead), so it may
        be very long or endless. With a parpy kernel and the default
        chunksize, chunks grow from 1 to 1024 items, each run natively.
        """
        return self._imap(func, iterable, chunksize, True, progress)

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        progress: bool = False,
    ) -> IMapIterator:
        """Like :meth:`imap`, with results in the order they finish."""
        return self._imap(func, iterable, chunksize, False, progress)

    def _imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int,
        ordered: bool,
        progress: bool,
    ) -> IMapIterator:
        self._check_running()
        show = _progress.require(progress)
        size = _chunksize(chunksize)
        control = self._new_control()
        bar = _progress.start(show, control, _progress.total_of(iterable), "imap")
        with self._lock:
            iterator = IMapIterator(self, func, iterable, size, ordered, bar, control)
            self._iterators.add(iterator)
            self._feeders.add(iterator)
        # Dropped by its consumer: its queued chunks are skipped, and a closed
        # pool need not wait for it.
        weakref.finalize(iterator, _dropped, iterator._runner, self._feeder_finished)
        iterator._feed(iterator._window)
        return iterator

    def _feeder_finished(self, iterator: IMapIterator | None) -> None:
        """An iterator read all its input, or was dropped (None)."""
        with self._lock:
            if iterator is not None:
                self._feeders.discard(iterator)
            if self._state == CLOSE and not self._feeders:
                self._queue.close()

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Accept no more work; the workers leave once the work given is done."""
        with self._lock:
            if self._state == RUN:
                self._state = CLOSE
            if not self._feeders:
                self._queue.close()

    def terminate(self) -> None:
        """Stop now: pending work is dropped, native batches cancelled, and
        results not finished fail with RuntimeError."""
        with self._lock:
            self._state = TERMINATE
        self._queue.stop()
        self._fail_pending(_terminated())

    def join(self) -> None:
        """Wait for the workers to leave (after close() or terminate())."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        # imap iterators not yet consumed: read the rest of their input now,
        # as the stdlib's pool would have.
        with self._lock:
            feeders = list(self._feeders)
        for iterator in feeders:
            iterator._feed(None)
        if self._state == CLOSE:
            self._queue.close()
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return
            for thread in alive:
                thread.join()

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"<{name} state={self._state} pool_size={self._processes}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_state", None) == RUN:
            _warn(f"unclosed running parpy.Pool {self!r}", ResourceWarning, source=self)
            if getattr(self, "_queue", None) is not None:
                self._queue.stop()


def _chunksize(chunksize: int | None) -> int:
    """0 for None (the default), else a validated positive chunk size."""
    if chunksize is None:
        return 0
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be an int, not {type(chunksize).__name__}")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
    return chunksize


_EXIT_JOIN_SECONDS = 2.0


@atexit.register
def _terminate_pools() -> None:
    """At interpreter exit, as multiprocessing does: terminate running pools.

    Then wait a little for their workers: native work is cancelled, so they
    leave at once unless a Python call is still running. A worker left
    behind is a daemon thread, as in the stdlib's pools.
    """
    for pool in list(_live_pools):
        if pool._state != TERMINATE:
            pool.terminate()
    deadline = time.monotonic() + _EXIT_JOIN_SECONDS
    for thread in list(_worker_threads):  # also those of pools collected already
        thread.join(max(0.0, deadline - time.monotonic()))

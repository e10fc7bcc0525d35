"""parpy.Pool: multiprocessing.Pool's API on native threads.

The semantics are those of ``multiprocessing.pool.ThreadPool`` (same
methods, results, exceptions with the worker's traceback, lifecycle). The
workers are threads waiting on parpy's native work queue. A parpy kernel
passed as ``func`` runs as native batches (``parpy._core.Batch``): the whole
input of ``map``, ``starmap`` and their ``_async`` forms is one batch,
computed by the pool's workers together; ``apply`` is a batch of one call;
``imap`` and ``imap_unordered`` make a batch of each chunk. So concurrent
calls share the pool's ``processes`` threads. A Python callable runs on the
workers with the GIL taken per call, ``chunksize`` items per task.

As in ``multiprocessing.pool``, the workers run the work and every result
completes through one method, ``_set(i, (ok, value))``.

Differences from the stdlib, all stated in the README: ``imap`` and
``imap_unordered`` read their input lazily (a bounded window ahead of the
consumer) instead of all at once; callbacks run on the worker thread that
finished the task; results still pending when the pool is terminated fail
with RuntimeError instead of never completing; a failing initializer breaks
the pool instead of restarting workers forever.
"""

from __future__ import annotations

import atexit
import itertools
import operator
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from multiprocessing import TimeoutError
from typing import Any

from parpy import _core
from parpy._support import fork as _fork
from parpy._support import progress as _progress
from parpy._support.dispatch import kernel_for
from parpy.batch import SCHEDULES, get_num_threads
from parpy.pool._imap import IMapIterator, dropped, terminated

__all__ = ["AsyncResult", "Pool", "TimeoutError"]

INIT, RUN, CLOSE, TERMINATE = "INIT", "RUN", "CLOSE", "TERMINATE"

_job_counter = itertools.count()
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
_worker_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # of every pool


class ApplyResult:
    """The result of ``apply_async``: ``get``, ``wait``, ``ready``, ``successful``.

    Made by the pool (``parpy.pool.AsyncResult`` is this class), not by users.

    Parameters
    ----------
    pool : Pool
        The pool that computes it.
    callback : callable or None
        Called with the value once it is there, on the worker thread.
    error_callback : callable or None
        Called with the exception instead, if the call failed.
    """

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
        self._cache[self._job] = self

    def ready(self) -> bool:
        """Return whether the call has completed.

        Returns
        -------
        bool
            True once the value or the exception is there.
        """
        return self._event.is_set()

    def successful(self) -> bool:
        """Return whether the call completed without raising.

        Returns
        -------
        bool
            True if it returned a value, False if it raised.

        Raises
        ------
        ValueError
            If the result is not ready.
        """
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready, or ``timeout`` seconds have passed.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; by default, until it is ready.
        """
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Return the value, once it is there; raise the call's exception if it failed.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; by default, until it is ready.

        Returns
        -------
        object
            The value of the call (for ``map_async``, the list of values).

        Raises
        ------
        multiprocessing.TimeoutError
            If it is not ready within ``timeout`` seconds.
        Exception
            The exception of the call, with the worker's traceback;
            RuntimeError if the pool was terminated before it finished.
        """
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, i: int, outcome: tuple[bool, Any]) -> None:
        """The completion protocol: a worker hands over task i's outcome."""
        self._finish(*outcome)

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

    def _cancel(self, error: BaseException | None = None) -> None:
        """Stop what is left of this call's work (terminate, Ctrl-C)."""
        self._finish(False, error or terminated())

    def _disown(self, error: BaseException) -> None:
        """In a forked child, alone: fails without callbacks (they are the
        parent's), with locks of its own."""
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._finished, self._success, self._value = True, False, error
        self._event.set()


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: a list in input order,
    from ``tasks`` tasks of ``chunksize`` items (a kernel's batch is one)."""

    def __init__(
        self,
        pool: Pool,
        chunksize: int,
        length: int,
        tasks: int,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        control: _core.Control,
        bar: _progress.Progress | None,
    ) -> None:
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length if tasks > 1 else None
        self._chunksize = chunksize
        self._control = control
        self._bar = bar
        self._error: BaseException | None = None
        self._number_left = tasks
        if tasks == 0:  # an empty input: ready at once, no callback (as the stdlib)
            self._value = []
            self._finished = True
            self._close_bar()
            self._event.set()
            del self._cache[self._job]

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _finish(self, success: bool, value: Any) -> None:
        if not success:
            self._control.cancel()  # the rest of the work is not needed
        self._close_bar()
        super()._finish(success, value)

    def _set(self, i: int, outcome: tuple[bool, Any]) -> None:
        # As the stdlib's MapResult: the first error is the outcome, reported
        # once every task has finished or been skipped (no fail-fast).
        ok, values = outcome
        with self._lock:
            if self._finished:
                return
            if not ok:
                if self._error is None:
                    self._error = values
            elif self._number_left == 1 and self._value is None:
                self._value = values  # the whole input in one task
            else:
                size = self._chunksize
                self._value[i * size : i * size + len(values)] = values
            self._number_left -= 1
            last = self._number_left == 0
        if last:
            if self._error is not None:
                self._finish(False, self._error)
            else:
                self._finish(True, self._value)

    def _run_chunk(self, func: Callable[..., Any], chunk: list[Any], star: bool) -> list[Any]:
        """Computes one chunk of a Python callable (a worker's task)."""
        values: list[Any] = []
        append = values.append
        for x in chunk:
            if self._finished:  # terminated, or abandoned by Ctrl-C
                break
            append(func(*x) if star else func(x))
        self._control.add(len(values))
        return values


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
    """multiprocessing.Pool on native threads.

    The semantics are those of ``multiprocessing.pool.ThreadPool`` (same
    methods, results, exceptions with the worker's traceback, lifecycle). A
    parpy kernel passed as ``func`` runs as native batches that the workers
    compute together with the GIL released; a Python callable runs on the
    workers with the GIL taken per call. As a context manager, the pool is
    terminated at the end of the ``with`` block.

    Parameters
    ----------
    processes : int, optional
        The worker threads; by default ``parpy.get_num_threads()``.
    initializer : callable, optional
        Called as ``initializer(*initargs)`` by each worker when it starts;
        if it raises, the pool is broken: pending and later work fails with
        RuntimeError.
    initargs : tuple, default ()
        The arguments of ``initializer``.
    maxtasksperchild : int, optional
        Tasks a worker thread runs before a fresh one (and its initializer)
        takes over; by default it runs for the pool's lifetime.

    Raises
    ------
    ValueError
        If ``processes`` < 1 or ``maxtasksperchild`` is not a positive int.
    TypeError
        If ``processes`` is not an int or ``initializer`` not callable.

    See Also
    --------
    parpy.pool : The differences from the stdlib, and how work is run.
    """

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
        self._control = self._new_control()  # of apply's calls
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
        _fork.register(self)

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
            iterator._results.end()
        for result in list(self._cache.values()):
            result._cancel(error)

    def _disown(self) -> None:
        """In a forked child, alone: the workers and the work are the parent's.
        The pool refuses work, its pending results fail, its imap iterators end."""
        message = (
            f"this parpy.Pool was made before process {os.getpid()} was forked: its workers "
            "are the parent's (make a new Pool in the child)"
        )
        self._lock = threading.RLock()
        self._threads = []
        self._state = TERMINATE
        self._broken = RuntimeError(message)
        for result in list(self._cache.values()):
            result._disown(RuntimeError(message))
        self._cache.clear()
        for iterator in list(self._iterators):
            iterator._disown()
        self._feeders = weakref.WeakSet()

    def _check_running(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _new_control(self) -> _core.Control:
        control = _core.Control()
        self._controls.add(control)
        return control

    def _submit(self, result: ApplyResult, index: int, task: Any, *args: Any) -> None:
        """Queue a task whose outcome goes to result._set(index, ...)."""
        try:
            self._queue.submit(result, index, task, *args)
        except RuntimeError:  # the pool no longer takes work
            result._cancel()

    # -- apply ----------------------------------------------------------------

    def apply(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwds: dict[str, Any] = {},  # noqa: B006
    ) -> Any:
        """Call ``func(*args, **kwds)`` on a worker and return its result.

        Parameters
        ----------
        func : callable
            A parpy kernel (a native batch of one call) or any callable.
        args : tuple, default ()
            Its positional arguments.
        kwds : dict, default {}
            Its keyword arguments (a kernel given any runs as a Python call).

        Returns
        -------
        object
            What ``func`` returned.

        Raises
        ------
        ValueError
            If the pool is not running (closed or terminated).
        RuntimeError
            If a worker's initializer failed, or the pool was terminated
            before the call finished.
        Exception
            What ``func`` raised (for a kernel: its error for a bad
            argument), with the worker's traceback.
        """
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwds: dict[str, Any] = {},  # noqa: B006 - the stdlib's signature
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> ApplyResult:
        """Call ``func(*args, **kwds)`` on a worker; return an AsyncResult.

        Parameters
        ----------
        func : callable
            A parpy kernel (a native batch of one call) or any callable.
        args : tuple, default ()
            Its positional arguments.
        kwds : dict, default {}
            Its keyword arguments.
        callback : callable, optional
            Called with the value once it is there, on the worker thread.
        error_callback : callable, optional
            Called with the exception instead, if the call failed.

        Returns
        -------
        AsyncResult
            Its ``get()`` returns the value or raises the call's exception
            (for a kernel, also its error for a bad argument).

        Raises
        ------
        ValueError
            If the pool is not running (closed or terminated).
        RuntimeError
            If a worker's initializer failed.
        """
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        kernel = kernel_for(func, len(args), kwds)
        if kernel is None:
            self._submit(result, 0, func, tuple(args), dict(kwds) or None)
            return result
        try:  # validated now; a bad argument is the result's exception
            batch = _core.call(kernel, tuple(args), self._control)
        except Exception as exc:
            result._set(0, (False, exc))
        else:
            self._submit(result, 0, batch)
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

        A parpy kernel runs the whole input as one native batch that every
        worker helps compute, the GIL released (``chunksize`` then means
        chunks of that many items in input order; by default chunks are sized
        by estimated cost, the costliest first).

        Parameters
        ----------
        func : callable
            A parpy kernel or any callable of one argument.
        iterable : iterable
            The items, read whole before any work starts.
        chunksize : int, optional
            Items per task; by default about four tasks per worker (for a
            kernel, chunks sized by estimated cost).
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        list
            The results, in input order.

        Raises
        ------
        ValueError
            If the pool is not running, or ``chunksize`` < 1.
        TypeError
            If ``chunksize`` is not an int or ``progress`` not a bool.
        ImportError
            If ``progress=True`` and tqdm is not installed.
        RuntimeError
            If a worker's initializer failed, or the pool was terminated
            before the work finished.
        Exception
            The first exception that ``func`` raised (for a kernel: a bad
            item's, noting its position, before any work), with the worker's
            traceback.
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
        """Like :meth:`map`, with each item unpacked as arguments: ``func(*x)``.

        Parameters
        ----------
        func : callable
            A parpy kernel (``parpy.fib_mod``) or any callable.
        iterable : iterable of iterables
            The argument tuples, read whole before any work starts.
        chunksize : int, optional
            Items per task, as in :meth:`map`.
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        list
            ``func(*x)`` for each item, in input order.

        Raises
        ------
        ValueError, TypeError, ImportError, RuntimeError
            As :meth:`map`.
        Exception
            The first exception that ``func`` raised.
        """
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
        """Asynchronous :meth:`map`: return an AsyncResult of the list.

        Parameters
        ----------
        func : callable
            A parpy kernel or any callable of one argument.
        iterable : iterable
            The items, read whole before any work starts.
        chunksize : int, optional
            Items per task, as in :meth:`map`.
        callback : callable, optional
            Called with the list once it is complete, on a worker thread.
        error_callback : callable, optional
            Called with the first exception instead, if a call failed.
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        AsyncResult
            Its ``get()`` returns the list, or raises the first exception.

        Raises
        ------
        ValueError
            If the pool is not running, or ``chunksize`` < 1.
        TypeError
            If ``chunksize`` is not an int or ``progress`` not a bool.
        ImportError
            If ``progress=True`` and tqdm is not installed.
        RuntimeError
            If a worker's initializer failed.
        """
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
        """Asynchronous :meth:`starmap`: return an AsyncResult of the list.

        Parameters
        ----------
        func : callable
            A parpy kernel or any callable.
        iterable : iterable of iterables
            The argument tuples, read whole before any work starts.
        chunksize : int, optional
            Items per task, as in :meth:`map`.
        callback : callable, optional
            Called with the list once it is complete, on a worker thread.
        error_callback : callable, optional
            Called with the first exception instead, if a call failed.
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        AsyncResult
            Its ``get()`` returns the list, or raises the first exception.

        Raises
        ------
        ValueError, TypeError, ImportError, RuntimeError
            As :meth:`map_async`.
        """
        return self._map_async(func, iterable, chunksize, True, callback, error_callback, progress)

    def _map(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        star: bool,
        progress: bool,
    ) -> list[Any]:
        result = self._map_async(func, iterable, chunksize, star, None, None, progress, True)
        try:
            return result.get()  # type: ignore[no-any-return]
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
        waiting: bool = False,
    ) -> MapResult:
        self._check_running()
        show = _progress.require(progress)
        items = iterable if isinstance(iterable, (list, tuple)) else list(iterable)
        n = len(items)
        # A kernel's items are one argument each (map), or each its arguments
        # (starmap of a kernel that takes several).
        kernel = kernel_for(func, 2 if star else 1)
        chunk = _chunksize(chunksize)
        control = self._new_control()
        bar = _progress.start(show, control, n, "map")
        if kernel is not None:
            result = MapResult(self, n, n, min(n, 1), callback, error_callback, control, bar)
            if n == 0:
                return result
            try:  # validated now, before any work: a bad item fails the result
                batch = _core.Batch(
                    kernel,
                    [tuple(x) for x in items] if star else items,
                    workers=self._processes,
                    schedule=SCHEDULES["dynamic" if chunk else None],
                    chunksize=chunk,
                    control=control,
                )
            except Exception as exc:
                result._set(0, (False, exc))
                return result
            if waiting and batch.tiny:  # handing it over would cost more than the work
                try:
                    result._set(0, (True, batch.run()))
                except Exception as exc:
                    result._set(0, (False, exc))
            else:
                self._submit(result, 0, batch)
            return result
        if chunksize is None:
            size, extra = divmod(n, self._processes * 4)
            size += bool(extra)
        else:
            size = chunk
        tasks = (n + size - 1) // size if n else 0
        result = MapResult(self, size, n, tasks, callback, error_callback, control, bar)
        for i in range(tasks):
            self._submit(
                result, i, result._run_chunk, (func, items[i * size : (i + 1) * size], star)
            )
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
        chunksize, chunks grow from 1 item to up to 1024, each a native batch
        in which every item gets its own value or exception.

        Parameters
        ----------
        func : callable
            A parpy kernel or any callable of one argument.
        iterable : iterable
            The items, read lazily.
        chunksize : int, default 1
            Items per task (for a kernel, the first chunk's size).
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        iterator
            The results; ``next()`` raises the exception of an item whose
            call failed, and the method ``.next(timeout)`` waits at most
            timeout seconds (then ``multiprocessing.TimeoutError``).

        Raises
        ------
        ValueError
            If the pool is not running, or ``chunksize`` < 1.
        TypeError
            If ``chunksize`` is not an int or ``progress`` not a bool.
        ImportError
            If ``progress=True`` and tqdm is not installed.
        RuntimeError
            If a worker's initializer failed.
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
        """Like :meth:`imap`, with results in the order they finish.

        Parameters
        ----------
        func : callable
            A parpy kernel or any callable of one argument.
        iterable : iterable
            The items, read lazily.
        chunksize : int, default 1
            Items per task, as in :meth:`imap`.
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        iterator
            The results, in completion order.

        Raises
        ------
        ValueError, TypeError, ImportError, RuntimeError
            As :meth:`imap`.
        """
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
        weakref.finalize(iterator, dropped, iterator._results, self._feeder_finished)
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
        """Stop now, dropping the pending work.

        Native batches are cancelled, and results not finished fail with
        RuntimeError.
        """
        with self._lock:
            self._state = TERMINATE
        self._queue.stop()
        self._fail_pending(terminated())

    def join(self) -> None:
        """Wait for the workers to leave (after close() or terminate()).

        Raises
        ------
        ValueError
            If the pool is still running (neither closed nor terminated).
        """
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


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's workers: at exit it waits for
    none. (The pools themselves are disowned through parpy._fork.)"""
    _live_pools.clear()
    _worker_threads.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


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

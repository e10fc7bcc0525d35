"""parpy.ThreadPoolExecutor: concurrent.futures on parpy's native work queue.

Futures are ``concurrent.futures.Future`` objects, so ``wait()`` and
``as_completed()`` work. A parpy kernel submitted with its argument is
validated at once (a native batch of one call) and computed by a worker
without the GIL; a worker computes a run of such tasks, then takes the GIL
once to complete their futures. Other callables run on the worker threads
with the GIL, as in the stdlib. Every future completes through one method,
``_set(i, (ok, value))``, as the pool's results do.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, _base
from concurrent.futures.thread import BrokenThreadPool
from typing import Any

from parpy import _core
from parpy._support import fork as _fork
from parpy._support import progress as _progress
from parpy._support.dispatch import kernel_for

__all__ = ["ThreadPoolExecutor"]

# Worker threads, their queues and the events they set when they leave, for
# the interpreter-exit hook (as in concurrent.futures.thread): at exit every
# queue is closed and every worker waited for once the work already
# submitted is done.
_threads_queues: weakref.WeakKeyDictionary[
    threading.Thread, tuple[_core.WorkQueue, threading.Event]
] = weakref.WeakKeyDictionary()
_global_shutdown = False
_global_shutdown_lock = threading.Lock()


def _python_exit() -> None:
    global _global_shutdown
    with _global_shutdown_lock:
        _global_shutdown = True
    workers = list(_threads_queues.values())
    for queue, _ in workers:
        queue.close()
    try:
        for _, left in workers:
            left.wait()
    except KeyboardInterrupt:
        # Ctrl-C at exit: drop the pending work, cancel the kernel
        # computations in progress, and wait only for Python calls to end.
        # (Not Thread.join: interrupted, it can mark a running thread
        # stopped, bpo-45274.)
        for queue, _ in workers:
            for future in queue.stop():
                future.cancel()
        for _, left in workers:
            left.wait()


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's workers: at exit it waits for
    none. Its copy of the lock, which one of the parent's threads may have
    held, is a new one (as in concurrent.futures.thread, bpo-45021). The
    executors themselves are disowned through parpy._fork."""
    _global_shutdown_lock._at_fork_reinit()  # type: ignore[attr-defined]
    _threads_queues.clear()


os.register_at_fork(
    before=_global_shutdown_lock.acquire,
    after_in_child=_after_fork_in_child,
    after_in_parent=_global_shutdown_lock.release,
)


def _worker(
    executor_ref: weakref.ref[ThreadPoolExecutor],
    queue: _core.WorkQueue,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    left: threading.Event,
) -> None:
    try:
        if initializer is not None:
            try:
                initializer(*initargs)
            except BaseException:
                _base.LOGGER.critical("Exception in initializer:", exc_info=True)
                executor = executor_ref()
                if executor is not None:
                    executor._initializer_failed()
                return
        queue.run(0)
    finally:
        left.set()


def _call_chunk(
    fn: Callable[..., Any], chunk: list[tuple[Any, ...]], control: _core.Control
) -> list[Any]:
    values = [fn(*args) for args in chunk]
    control.add(len(values))
    return values


_SKIPPED = object()  # _call's value for a future cancelled before it ran


class _Future(Future[Any]):
    """A concurrent.futures.Future that a worker completes with ``_set``."""

    __slots__ = ()

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A Python call's task: running from now on, as the stdlib's worker marks it."""
        if not self.set_running_or_notify_cancel():
            return _SKIPPED
        return fn(*args, **kwargs)

    def _set(self, i: int, outcome: tuple[bool, Any]) -> None:
        """The completion protocol. A native result arrives while its future
        is still pending: it shows running() only while it is completed, so
        cancel() succeeds until then (and the result is dropped)."""
        ok, value = outcome
        if value is _SKIPPED:
            return
        if self._state != _base.RUNNING:  # a native result (or cancelled meanwhile)
            if not ok and isinstance(value, _core.Cancelled):  # the queue was stopped
                self.cancel()
                return
            if not self.set_running_or_notify_cancel():
                return
        if ok:
            self.set_result(value)
        else:
            self.set_exception(value)


def _result_or_cancel(future: Future[Any], timeout: float | None = None) -> Any:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future  # no reference cycle through the traceback


class ThreadPoolExecutor(_base.Executor):
    """concurrent.futures.ThreadPoolExecutor on native threads.

    Same constructor, methods and lifecycle as the stdlib's; ``map`` also
    takes ``buffersize`` (as in Python 3.14) and ``progress``, and uses
    ``chunksize`` (items per task). Workers start as work arrives, up to
    ``max_workers``.

    Parameters
    ----------
    max_workers : int, optional
        The most worker threads; by default ``min(32, os.cpu_count() + 4)``.
    thread_name_prefix : str, default ""
        The prefix of the workers' thread names.
    initializer : callable, optional
        Called as ``initializer(*initargs)`` by each worker when it starts;
        if it raises, the executor is broken (BrokenThreadPool).
    initargs : tuple, default ()
        The arguments of ``initializer``.

    Raises
    ------
    ValueError
        If ``max_workers`` <= 0.
    TypeError
        If ``initializer`` is not callable.
    """

    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._max_workers = max_workers
        self._queue = _core.WorkQueue()
        self._threads: set[threading.Thread] = set()
        self._broken: str | bool = False
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._thread_name_prefix = thread_name_prefix or f"ThreadPoolExecutor-{self._counter()}"
        self._initializer = initializer
        self._initargs = initargs
        # A collected executor lets its workers leave, as the stdlib's does.
        weakref.finalize(self, self._queue.close)
        _fork.register(self)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return a Future of its result.

        A parpy kernel given its positional arguments is validated now (a bad
        argument gives a future that has already failed) and computed by a
        worker without the GIL; any other call runs on a worker with the GIL.

        Parameters
        ----------
        fn : callable
            A parpy kernel or any callable.
        *args : object
            Its positional arguments.
        **kwargs : object
            Its keyword arguments.

        Returns
        -------
        concurrent.futures.Future
            The future of the call's result.

        Raises
        ------
        RuntimeError
            If the executor was shut down, or the interpreter is exiting.
        concurrent.futures.thread.BrokenThreadPool
            If a worker's initializer failed.
        """
        future = _Future()
        kernel = kernel_for(fn, len(args), kwargs)
        if kernel is None:
            return self._enqueue(future, future._call, (fn, args, kwargs))
        with self._shutdown_lock, _global_shutdown_lock:
            self._check_open()  # before the argument: shutdown wins over bad input
        try:  # validated now (not under the lock: it may run __index__)
            batch = _core.call(kernel, args)
        except Exception as exc:
            future.set_exception(exc)  # bad input gives an already failed future
            return future
        return self._enqueue(future, batch)

    def _check_open(self) -> None:
        """Raises if no work may be submitted. Call with the locks held."""
        if self._broken:
            raise BrokenThreadPool(self._broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _global_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def _enqueue(self, future: _Future, task: Any, args: tuple[Any, ...] = ()) -> Future[Any]:
        """Queues task (a Batch, or a call of task(*args)) for future; starts
        a worker when none is idle to take it."""
        with self._shutdown_lock, _global_shutdown_lock:
            self._check_open()
            busy = self._queue.submit(future, 0, task, args)
            if busy and len(self._threads) < self._max_workers:
                self._start_worker()
        return future

    def _start_worker(self) -> None:
        name = f"{self._thread_name_prefix}_{len(self._threads)}"
        left = threading.Event()
        thread = threading.Thread(
            name=name,
            target=_worker,
            args=(weakref.ref(self), self._queue, self._initializer, self._initargs, left),
        )
        thread.start()
        self._threads.add(thread)
        _threads_queues[thread] = (self._queue, left)

    def _disown(self) -> None:
        """In a forked child, alone: the workers and the work are the parent's;
        it refuses work (its queue holds the parent's tasks)."""
        self._shutdown_lock = threading.Lock()
        self._threads.clear()
        self._broken = (
            f"this executor was made before process {os.getpid()} was forked: its workers "
            "are the parent's (make a new executor in the child)"
        )

    def _initializer_failed(self) -> None:
        with self._shutdown_lock:
            self._broken = "A thread initializer failed, the thread pool is not usable anymore"
            for future in self._queue.drain():
                if not future.done():
                    future.set_exception(BrokenThreadPool(self._broken))

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool = False,
    ) -> Iterator[Any]:
        """Return an iterator of ``fn(*args)`` over the zipped iterables, in order.

        As ``Executor.map``: calls are submitted at once (or, with
        ``buffersize``, at most that many ahead of the consumer, so an endless
        input is read lazily); an exception is raised when its result is
        reached.

        Parameters
        ----------
        fn : callable
            A parpy kernel or any callable taking one argument per iterable.
        *iterables : iterable
            The arguments, zipped (up to the shortest).
        timeout : float, optional
            Seconds, from this call, for all the results; by default no limit.
        chunksize : int, default 1
            Items per task; a chunk of a parpy kernel runs as one native batch.
        buffersize : int, optional
            The most tasks submitted ahead of the consumer; by default all.
        progress : bool, default False
            Show a progress bar (tqdm).

        Returns
        -------
        iterator
            The results in order; ``next()`` raises a call's exception, or
            TimeoutError once ``timeout`` has passed.

        Raises
        ------
        TypeError
            If ``chunksize`` or ``buffersize`` is not an int, or ``progress``
            not a bool.
        ValueError
            If ``chunksize`` or ``buffersize`` < 1.
        ImportError
            If ``progress=True`` and tqdm is not installed.
        RuntimeError
            If the executor was shut down.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError("chunksize must be an int")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if isinstance(buffersize, bool) or not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        show = _progress.require(progress)
        end_time = None if timeout is None else timeout + time.monotonic()
        control = _core.Control()
        bar = _progress.start(show, control, _progress.total_of_all(iterables), "map")
        kernel = kernel_for(fn, len(iterables))
        args_iter: Iterator[tuple[Any, ...]] = zip(*iterables)  # noqa: B905 - stops at the shortest
        chunked = chunksize > 1 or kernel is not None
        if not chunked:
            tasks = (self._submit_one(fn, args, bar, control) for args in args_iter)
        else:  # a kernel's chunk, even of one item, is a batch: a failure names its position
            tasks = (
                self._submit_chunk(fn, chunk, start, kernel, control)
                for start, chunk in _chunks(args_iter, chunksize)
            )
        futures: deque[Future[Any]] = deque()
        try:
            futures.extend(tasks if buffersize is None else itertools.islice(tasks, buffersize))
        except BaseException:  # bad input, or Ctrl-C while submitting: no work is left behind
            for future in futures:
                future.cancel()
            if bar is not None:
                bar.close()
            raise
        return self._results(futures, tasks, end_time, chunked, bar)

    def _submit_one(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        bar: _progress.Progress | None,
        control: _core.Control,
    ) -> Future[Any]:
        future = self.submit(fn, *args)
        if bar is not None:
            future.add_done_callback(lambda _: control.add(1))
        return future

    def _submit_chunk(
        self,
        fn: Callable[..., Any],
        chunk: list[tuple[Any, ...]],
        start: int,
        kernel: _core.Kernel | None,
        control: _core.Control,
    ) -> Future[Any]:
        if kernel is None:
            return self.submit(_call_chunk, fn, chunk, control)
        items = [args[0] for args in chunk] if kernel.max_args == 1 else chunk
        try:  # one native batch: the chunk's values, or its first failure
            task = _core.Batch(kernel, items, control=control, start=start)
        except Exception as exc:
            future = _Future()
            future.set_exception(exc)
            return future
        return self._enqueue(_Future(), task)

    @staticmethod
    def _results(
        futures: deque[Future[Any]],
        tasks: Iterator[Future[Any]],
        end_time: float | None,
        chunked: bool,
        bar: _progress.Progress | None,
    ) -> Iterator[Any]:
        # Without buffersize, tasks is already exhausted: islice gets nothing.
        try:
            while futures:
                futures.extend(itertools.islice(tasks, 1))
                remaining = None if end_time is None else end_time - time.monotonic()
                # No local holds a result while suspended at yield (bpo-14406).
                if chunked:
                    yield from _result_or_cancel(futures.popleft(), remaining)
                else:
                    yield _result_or_cancel(futures.popleft(), remaining)
        finally:
            for future in futures:
                future.cancel()
            if bar is not None:
                bar.close()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more work; the workers leave once the work given is done.

        Parameters
        ----------
        wait : bool, default True
            Wait for the workers to finish the pending work and leave.
        cancel_futures : bool, default False
            Cancel the futures of the work not yet started.
        """
        with self._shutdown_lock:
            self._shutdown = True
            if cancel_futures:
                for future in self._queue.drain():
                    future.cancel()
            self._queue.close()
        if wait:
            for thread in list(self._threads):
                thread.join()


def _chunks(
    args_iter: Iterator[tuple[Any, ...]], size: int
) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """(position of its first item, chunk) for chunks of size items."""
    start = 0
    while chunk := list(itertools.islice(args_iter, size)):
        yield start, chunk
        start += len(chunk)

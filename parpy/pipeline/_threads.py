"""The threading backend of parpy.Pipeline: threading.Thread and queue.Queue.

Every run starts its own threads, all named ``parpy-pipeline-...``: a feeder
that reads the input, and ``stage.workers`` threads per stage, each calling
``stage.func(item)`` (a parpy kernel is just called). The queue in front of
each stage holds at most :func:`room` items, so a stage ahead of a slower one
waits for room (``blocked_out``), and so does the feeder (counted in
``input_blocked``, with its waits for a token). The last stage's results go
to an unbounded queue that the consumer, the generator
:meth:`ThreadRunner.run`, reads.

The bound: the feeder takes a token from a semaphore of ``maxsize`` before it
reads each item; the consumer gives one back when it comes back for the next
result after one it handed out. So at most ``maxsize`` items are between the
input and the consumer, wherever they are (queues, stage functions, the
reorder buffer).

Errors: the first exception (a stage's, or the input's) is kept with its
stage and item position, every thread is told to stop, queued items are
dropped, and the consumer raises, with its note, the exception of the lowest
position once every thread of the run has ended (an item already in a stage
at the stop may fail too). Closing the generator, or an exception in the consumer,
ends the run the same way; after Ctrl-C the consumer waits for the run's
threads at most parpy.pipeline.GRACE seconds, and a thread still in a Python
call leaves once the call returns. Every wait of the consumer wakes at least
every :data:`POLL` seconds. A pipeline at rest holds no thread: the run's
threads end before ``run`` returns or raises (but for those left in a call
after Ctrl-C).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from parpy._support import fork as _fork
from parpy.pipeline._handout import Handout, raise_outcome, room, take_token
from parpy.pipeline._stages import POLL, RawStage, RawStats, Stage, settle

__all__ = ["ThreadRunner"]

# Per-worker counters, summed per stage by snapshot().
ITEMS_IN, ITEMS_OUT, BUSY, BLOCKED_IN, BLOCKED_OUT = range(5)


_END = object()  # on a stage's queue: the worker that takes it ends
_WAKE = object()  # on the results queue: look at the run's state


class _Run:
    """One run's queues, threads, counters and outcome."""

    def __init__(self, stages: tuple[Stage, ...], maxsize: int) -> None:
        self.stages = stages
        self.stop = threading.Event()
        self.tokens = threading.Semaphore(maxsize)
        self.queues: list[queue.Queue[Any]] = [queue.Queue(room(s, maxsize)) for s in stages]
        self.results: queue.Queue[Any] = queue.Queue()
        self.counts: list[list[list[Any]]] = [
            [[0, 0, 0.0, 0.0, 0.0] for _ in range(s.workers)] for s in stages
        ]
        self.lock = threading.Lock()
        # The first exception, the stage that raised it (None: the input) and
        # the item's position.
        self.error: tuple[BaseException, int | None, int] | None = None
        self.total: int | None = None  # items read, once the input ended
        self.input_blocked = 0.0
        self.done = 0
        self.closed = False
        self.threads: list[threading.Thread] = []
        self.started = time.monotonic()
        self.ended: float | None = None
        _fork.register(self)

    def _disown(self) -> None:
        """In a forked child, alone: the threads and the queues' locks are the
        parent's; the run counts as ended and closed."""
        self.lock = threading.Lock()
        self.threads = []
        self.closed = True
        self.stop = threading.Event()
        self.stop.set()
        if self.ended is None:
            self.ended = time.monotonic()

    def fail(self, exc: BaseException, stage: int | None, position: int) -> None:
        """Keeps the run's error, the first or one of a lower position (an
        item already in a stage at the stop may still fail), and stops every
        thread."""
        with self.lock:
            if not self.closed and (self.error is None or position < self.error[2]):
                self.error = (exc, stage, position)
        self.stop.set()
        self.results.put(_WAKE)

    def feed(self, iterator: Iterator[Any]) -> None:
        """The feeder thread: a token, then an item, until the input ends."""
        stop, put = self.stop, self.queues[0].put
        now = time.monotonic
        position = 0
        while True:
            if not take_token(self):
                return
            try:
                item = next(iterator)
            except StopIteration:
                self.total = position
                self.results.put(_WAKE)
                return
            except BaseException as exc:
                self.fail(exc, None, position)
                return
            message = (position, item)
            del item
            began = now()
            while True:
                try:
                    put(message, timeout=POLL)
                except queue.Full:
                    if stop.is_set():
                        return
                else:
                    break
            del message
            self.input_blocked += now() - began
            position += 1

    def work(self, index: int, counts: list[Any]) -> None:
        """A worker thread of stages[index]."""
        func = self.stages[index].func
        get = self.queues[index].get
        out = self.queues[index + 1] if index + 1 < len(self.queues) else self.results
        stop = self.stop
        while True:
            began = time.monotonic()
            try:
                message = get(timeout=POLL)
            except queue.Empty:
                counts[BLOCKED_IN] += time.monotonic() - began
                if stop.is_set():
                    return
                continue
            counts[BLOCKED_IN] += time.monotonic() - began
            if message is _END or stop.is_set():
                return
            position, item = message
            del message
            counts[ITEMS_IN] += 1
            began = time.monotonic()
            try:
                value = func(item)
            except BaseException as exc:
                counts[BUSY] += time.monotonic() - began
                self.fail(exc, index, position)
                return
            del item
            finished = time.monotonic()
            counts[BUSY] += finished - began
            message = (position, value)
            del value
            while True:
                try:
                    out.put(message, timeout=POLL)
                except queue.Full:
                    if stop.is_set():
                        break
                else:
                    counts[ITEMS_OUT] += 1
                    break
            del message
            counts[BLOCKED_OUT] += time.monotonic() - finished

    def start(self, iterator: Iterator[Any]) -> None:
        threads = [
            threading.Thread(target=self.feed, args=(iterator,), name="parpy-pipeline-feeder")
        ]
        for index, stage_counts in enumerate(self.counts):
            for worker, counts in enumerate(stage_counts):
                threads.append(
                    threading.Thread(
                        target=self.work,
                        args=(index, counts),
                        name=f"parpy-pipeline-stage{index}-{worker}",
                    )
                )
        for thread in threads:
            thread.daemon = True
            self.threads.append(thread)
            thread.start()

    def finish(self, interrupted: bool = False) -> None:
        """Stops the run and waits until every thread of it has ended (after
        Ctrl-C, see parpy.pipeline.settle)."""
        if self.ended is not None:
            return  # finished already (or disowned in a forked child)
        self.stop.set()
        for stage, q in zip(self.stages, self.queues, strict=True):
            for _ in range(stage.workers):  # wakes the idle workers at once
                try:
                    q.put_nowait(_END)
                except queue.Full:
                    break  # a full queue's workers see the stop within POLL
        me = threading.current_thread()
        others = [thread for thread in self.threads if thread is not me]

        def at_rest(timeout: float) -> bool:
            alive = [thread for thread in others if thread.is_alive()]
            if alive:
                alive[0].join(timeout)
            return not any(thread.is_alive() for thread in alive)

        settle(at_rest, interrupted)
        if self.ended is None:
            self.ended = time.monotonic()
        for q in (*self.queues, self.results):  # what a stopped run left queued
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break

    def snapshot(self) -> RawStats:
        ended = self.ended
        wall = (time.monotonic() if ended is None else ended) - self.started
        stages = tuple(
            RawStage(
                sum(c[ITEMS_IN] for c in counts),
                sum(c[ITEMS_OUT] for c in counts),
                sum(c[BUSY] for c in counts),
                sum(c[BLOCKED_IN] for c in counts),
                sum(c[BLOCKED_OUT] for c in counts),
            )
            for counts in self.counts
        )
        return RawStats(wall, ended is None, stages, self.input_blocked)


class ThreadRunner:
    """Runs a Pipeline's stages on threading.Thread workers joined by queue.Queue."""

    def __init__(self, stages: tuple[Stage, ...], maxsize: int, ordered: bool) -> None:
        self._stages = stages
        self._maxsize = maxsize
        self._ordered = ordered
        self._run: _Run | None = None
        self._closed = False

    def run(self, iterator: Iterator[Any], total: int | None = None) -> Iterator[Any]:
        if self._closed:
            raise ValueError("Pipeline is closed")
        last = self._run
        if last is not None and last.ended is None:
            last.finish(interrupted=True)  # its end was interrupted (a second Ctrl-C)
        run = _Run(self._stages, self._maxsize)
        self._run = run
        interrupted = False
        try:
            run.start(iterator)
            yield from self._collect(run)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            run.finish(interrupted)
        raise_outcome(run, self._stages)

    def _collect(self, run: _Run) -> Iterator[Any]:
        """The consumer: results in input order, or as they come. (Its own
        frame: the traceback of an error raised by run() does not hold the
        reorder buffer.)"""
        results, handout = run.results, Handout(run, run.tokens, self._ordered)
        while run.error is None and not run.closed and run.done != run.total:
            try:
                message = results.get(timeout=POLL)
            except queue.Empty:
                continue
            if message is _WAKE:
                continue
            position, value = message
            del message
            yield from handout.add(position, value)

    def snapshot(self) -> RawStats | None:
        run = self._run
        return None if run is None else run.snapshot()

    @property
    def done(self) -> int:
        run = self._run
        return 0 if run is None else run.done

    def close(self) -> None:
        self._closed = True
        run = self._run
        if run is not None and run.ended is None:
            with run.lock:
                run.closed = True
            run.stop.set()
            run.results.put(_WAKE)
            run.finish()

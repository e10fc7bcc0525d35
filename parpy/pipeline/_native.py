"""The native backend of parpy.Pipeline: parpy._core.PipelineRun's threads.

A run is a ``_core.PipelineRun`` (csrc/engine/pipeline.c) driven by Python threads
that call into it and stay in C: one reads the input (``feed``), each stage
worker computes (``work``) without the GIL unless its stage is a Python
callable; the consumer takes chunks of results (``next``). The threads are
kept between runs, parked on a queue, and released by :meth:`close`. The
last of a run's threads and its consumer to finish closes it, so that the
consumer need not wait for a thread still in a Python call after Ctrl-C
(parpy.pipeline.settle).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from parpy import _core
from parpy._support import fork as _fork
from parpy.pipeline._stages import RawStage, RawStats, Stage, settle

_ENOUGH = 4096  # threads kept parked between runs, at most


class _Workers:
    """Parked threads that run one task each per run."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._idle: list[tuple[threading.Thread, queue.SimpleQueue[Any]]] = []
        self._all: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        self._runs: set[threading.Event] = set()  # of the runs not finished
        _fork.register(self)

    def _disown(self) -> None:
        """In a forked child, alone: the threads are the parent's; a run of
        theirs counts as finished, and the next run starts new threads."""
        self._lock = threading.Lock()
        self._idle, self._all = [], []
        for finished in self._runs:
            finished._at_fork_reinit()  # type: ignore[attr-defined]
            finished.set()
        self._runs = set()

    def open(
        self, count: int, then: Callable[[], object]
    ) -> tuple[threading.Event, Callable[[], None]]:
        """A run of count tasks. Returns an Event and ``end``: each task calls
        end() once it is done, and so does the caller once it is done with the
        run; then() runs after the last of these calls, and the Event is set
        after it."""
        finished = threading.Event()
        left = [count + 1]

        def end() -> None:
            with self._lock:
                left[0] -= 1
                if left[0]:
                    return
            try:
                then()
            finally:
                with self._lock:
                    self._runs.discard(finished)
                finished.set()

        with self._lock:
            self._runs.add(finished)
        return finished, end

    def give(self, tasks: list[Callable[[], object]], end: Callable[[], None]) -> None:
        """Runs every task of an open run on a thread of its own. Interrupted
        (Ctrl-C) while threads start, it gives no task, and they count as done."""
        slots: list[tuple[threading.Thread, queue.SimpleQueue[Any]]] = []
        try:
            for _ in tasks:
                slots.append(self._slot())
        except BaseException:
            with self._lock:
                self._idle += slots
            for _ in tasks:
                end()
            raise
        # One call in C: no Ctrl-C lands between two puts.
        deque(
            map(
                queue.SimpleQueue.put,
                [s[1] for s in slots],
                [(t, end, s) for t, s in zip(tasks, slots, strict=True)],
            ),
            maxlen=0,
        )

    def _slot(self) -> tuple[threading.Thread, queue.SimpleQueue[Any]]:
        """A parked thread, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._loop,
                args=(inbox,),
                name=f"{self._name}-{len(self._all)}",
                daemon=True,
            )
            self._all.append(thread)
        try:
            thread.start()
        except BaseException:
            # Ctrl-C while it starts: the thread (if it did start) leaves at
            # once, and nothing joins it.
            inbox.put(None)
            with self._lock:
                if thread in self._all:
                    self._all.remove(thread)
            raise
        return thread, inbox

    def _loop(self, inbox: queue.SimpleQueue[Any]) -> None:
        while True:
            job = inbox.get()
            if job is None:
                return
            task, end, slot = job
            del job  # a parked thread keeps nothing of the run alive
            try:
                task()
            finally:
                del task
                with self._lock:
                    keep = not self._closed and len(self._idle) < _ENOUGH
                    if keep:
                        self._idle.append(slot)
                end()
                del end
            if not keep:
                return

    def release(self) -> list[threading.Thread]:
        """Parked threads leave now, busy ones after their task; returns them all."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads, self._all = self._all, []
        for _, inbox in idle:
            inbox.put(None)
        return threads

    def close(self) -> None:
        for thread in self.release():
            thread.join()


class NativeRunner:
    def __init__(self, stages: tuple[Stage, ...], maxsize: int, ordered: bool) -> None:
        self._spec = tuple((s.func, s.workers, s.name) for s in stages)
        self._maxsize = maxsize
        self._ordered = ordered
        self._workers = _Workers("parpy-pipeline")
        self._run: _core.PipelineRun | None = None

    def run(self, iterator: Iterator[Any], total: int | None = None) -> Iterator[Any]:
        run = _core.PipelineRun(self._spec, self._maxsize, self._ordered)
        self._run = run
        tasks: list[Callable[[], object]] = [lambda: run.feed(iterator, total)]
        for k, (_, workers, _) in enumerate(self._spec):
            tasks += [lambda k=k: run.work(k)] * workers  # type: ignore[misc]
        finished, leave = self._workers.open(len(tasks), then=run.close)
        interrupted = False
        try:
            self._workers.give(tasks, leave)
            while (chunk := run.next()) is not None:
                yield from chunk
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            run.stop()
            leave()
            settle(finished.wait, interrupted)

    def snapshot(self) -> RawStats | None:
        run = self._run
        if run is None:
            return None
        wall, running, input_blocked, rows = run.counters()
        return RawStats(wall, running, tuple(RawStage(*row) for row in rows), input_blocked)

    @property
    def done(self) -> int:
        run = self._run
        return 0 if run is None else run.done

    def close(self) -> None:
        run = self._run
        if run is not None:
            run.stop(RuntimeError("the Pipeline was closed during this run"))
        self._workers.close()

    def __del__(self) -> None:
        # an unclosed pipeline: its parked threads leave (without a join,
        # which could be from one of them)
        self._workers.release()

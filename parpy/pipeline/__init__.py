"""parpy.Pipeline and parpy.Stage: stages with their own workers, joined by
bounded queues, on native threads (or on threading or multiprocessing, the
same definition, for comparison).

This module is the front: validation, the stdlib-shaped API and the run
lifecycle; the stages and what every backend shares are in ``_stages``, the
statistics report in ``_stats``. A backend is a runner (``_stages.Runner``)
in its own module: ``_native`` (parpy._core's pipeline engine), ``_threads``
(threading.Thread and queue.Queue) and ``_processes`` (worker processes and
multiprocessing queues), the last two handing out items alike
(``_handout``). Every backend keeps the same rules:

- Results are those of the serial composition of the stage functions; in
  input order when ``ordered``, else in completion order.
- An item is in flight from the moment it is read from the input until the
  consumer asks for the result after it; at most ``maxsize`` items are.
- The input is read on a thread of the runner, lazily; the first exception
  (from a stage, or the input iterator) stops every stage and queued work is
  dropped. An item already in a stage may still fail: once every worker is at
  rest, ``run`` raises the exception of the lowest input position, with a
  note from :func:`stage_note` or :func:`input_note`.
- Ctrl-C in the consumer stops the run at once and ``run`` raises
  KeyboardInterrupt within :data:`GRACE` seconds (:func:`settle`): a Python
  call in progress (a stage function, the input iterator) cannot be cut
  short, so its thread is left to finish that call and leaves without taking
  another item.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from parpy._support import fork as _fork
from parpy._support import progress as _progress
from parpy.pipeline._native import NativeRunner
from parpy.pipeline._processes import ProcessRunner
from parpy.pipeline._stages import Runner, Stage, count
from parpy.pipeline._stats import PipelineStats, StageStats
from parpy.pipeline._threads import ThreadRunner

__all__ = ["Pipeline", "PipelineStats", "Stage", "StageStats"]

BACKENDS = ("native", "threading", "multiprocessing")
# The default bound on items in flight: room for a few chunks per worker on
# the native backend, with chunks of a few hundred cheap items.
DEFAULT_MAXSIZE = 4096


def _runner(backend: str, stages: tuple[Stage, ...], maxsize: int, ordered: bool) -> Runner:
    if backend == "native":
        return NativeRunner(stages, maxsize, ordered)
    if backend == "threading":
        return ThreadRunner(stages, maxsize, ordered)
    return ProcessRunner(stages, maxsize, ordered)


class Pipeline:
    """Items flow through ``stages`` in turn, each stage with workers of its own.

    At most ``maxsize`` items are in flight. One run at a time: a second map
    or imap while one is unfinished (in any thread) raises RuntimeError. As a
    context manager, the pipeline is closed at the end of the ``with`` block.

    Parameters
    ----------
    stages : iterable of Stage or callable
        The steps, in order: :class:`Stage` objects or bare callables (one
        worker each).
    maxsize : int, default 4096
        The most items in flight, from being read off the input until their
        result is taken.
    ordered : bool, default True
        Results in input order, streamed as soon as every earlier one is
        out; else in completion order.
    backend : {"native", "threading", "multiprocessing"}, default "native"
        "native": parpy's threads; kernels compute without the GIL and pass C
        values to the next kernel.
    progress : bool, default False
        Show a progress bar (tqdm) of the items out.

    Raises
    ------
    TypeError
        If ``stages`` is not an iterable, a stage is not callable, or
        ``maxsize``, ``ordered`` or ``progress`` has the wrong type.
    ValueError
        If there is no stage, ``maxsize`` < 1 or ``backend`` is unknown.
    ImportError
        If ``progress=True`` and tqdm is not installed.
    """

    def __init__(
        self,
        stages: Iterable[Stage | Callable[[Any], Any]],
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        ordered: bool = True,
        backend: str = "native",
        progress: bool = False,
    ) -> None:
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
            raise TypeError(f"stages must be an iterable of Stage, not {type(stages).__name__}")
        built = tuple(s if isinstance(s, Stage) else Stage(s) for s in stages)
        if not built:
            raise ValueError("a Pipeline needs at least one stage")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be True or False, not {type(ordered).__name__}")
        if backend not in BACKENDS:
            names = ", ".join(map(repr, BACKENDS))
            raise ValueError(f"backend must be one of {names}, not {backend!r}")
        self.stages = built
        self.maxsize = count("maxsize", maxsize)
        self.ordered = ordered
        self.backend = backend
        self.progress = _progress.require(progress)
        self._runner = _runner(backend, built, self.maxsize, ordered)
        self._lock = threading.Lock()
        self._running = False
        self._closed = False
        _fork.register(self)

    def _disown(self) -> None:
        """In a forked child, alone: a run in progress is the parent's (its
        runner disowns it); this pipeline can run again here."""
        self._lock = threading.Lock()
        self._running = False

    def map(self, items: Iterable[Any]) -> list[Any]:
        """Run the items through the stages; return every result, as a list.

        Parameters
        ----------
        items : iterable
            The input, read lazily on a thread of the pipeline.

        Returns
        -------
        list
            The results (in input order when ``ordered``).

        Raises
        ------
        ValueError
            If the pipeline is closed.
        RuntimeError
            If another run of this pipeline is unfinished.
        Exception
            The first exception of a stage or of the input iterator (the one
            of the lowest input position), with a note of the stage and the
            item's position.
        """
        return list(self.imap(items))

    def imap(self, items: Iterable[Any]) -> Iterator[Any]:
        """Return an iterator of the results as they leave the last stage.

        The input is read lazily. The run starts at the first ``next()``,
        which raises RuntimeError if another run of this pipeline is
        unfinished; a stage's exception is raised by ``next()`` as in
        :meth:`map`. Closing the iterator stops the run.

        Parameters
        ----------
        items : iterable
            The input, possibly endless.

        Returns
        -------
        iterator
            The results (in input order when ``ordered``).

        Raises
        ------
        ValueError
            If the pipeline is closed.
        """
        if self._closed:
            raise ValueError("Pipeline is closed")
        return self._imap(iter(items), _progress.total_of(items))

    def _imap(self, iterator: Iterator[Any], total: int | None) -> Iterator[Any]:
        with self._lock:
            if self._closed:
                raise ValueError("Pipeline is closed")
            if self._running:
                raise RuntimeError(
                    "this Pipeline is already running (a map in another thread, or an "
                    "unfinished imap): a Pipeline runs one input at a time; make another "
                    "Pipeline, or finish or close the other iterator"
                )
            self._running = True
        bar = None
        try:
            bar = _progress.start(self.progress, self._runner, total, "pipeline")  # type: ignore[arg-type]
            yield from self._runner.run(iterator, total)
        finally:
            if bar is not None:
                bar.close()
            with self._lock:
                self._running = False

    def stats(self) -> PipelineStats:
        """Return the figures of the run in progress, or of the last one.

        Returns
        -------
        PipelineStats
            Per stage: items, busy and blocked time, utilisation; and the
            bottleneck.
        """
        return PipelineStats(self.backend, self.stages, self._runner.snapshot())

    def close(self) -> None:
        """Stop a run in progress and release the workers. Idempotent."""
        with self._lock:
            self._closed = True
        self._runner.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self._running else "idle"
        stages = ", ".join(f"{s.name} x{s.workers}" for s in self.stages)
        return (
            f"<parpy.Pipeline {self.backend} [{stages}] maxsize={self.maxsize} "
            f"ordered={self.ordered} {state}>"
        )

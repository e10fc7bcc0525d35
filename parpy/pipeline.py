"""parpy.Pipeline and parpy.Stage: stages with their own workers, joined by
bounded queues, on native threads (or on threading or multiprocessing, the
same definition, for comparison).

This module is the front: validation, the stdlib-shaped API, the run
lifecycle and the statistics report. A backend is a runner (the protocol
below) in its own module: ``_pipe_native`` (parpy._core's pipeline engine),
``_pipe_threads`` (threading.Thread and queue.Queue) and ``_pipe_procs``
(worker processes and multiprocessing queues). Every backend keeps the same
rules:

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

import functools
import html
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from parpy import _core, _fork, _progress

__all__ = ["Pipeline", "PipelineStats", "Stage", "StageStats"]

BACKENDS = ("native", "threading", "multiprocessing")
# The default bound on items in flight: room for a few chunks per worker on
# the native backend, with chunks of a few hundred cheap items.
DEFAULT_MAXSIZE = 4096


def _count(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, not {value}")
    return value


def _name_of(func: Callable[..., Any]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, _core.Kernel):
        if func.bound is None:
            return func.__name__
        return f"{func.__name__}.bind({', '.join(map(repr, func.bound))})"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__


class Stage:
    """One step of a :class:`Pipeline`: ``func`` applied to every item by
    ``workers`` workers of its own.

    ``func`` is a parpy kernel (computed on native threads without the GIL),
    a bound kernel (``parpy.fib_mod.bind(m)``) or any Python callable of one
    argument. ``name`` labels the stage in errors and :meth:`Pipeline.stats`.
    """

    __slots__ = ("func", "name", "workers")

    def __init__(self, func: Callable[[Any], Any], workers: int = 1, name: str | None = None):
        if not callable(func):
            raise TypeError(f"a Stage needs a callable, not {type(func).__name__}")
        if isinstance(func, _core.Kernel) and 1 + len(func.bound or ()) < func.min_args:
            raise TypeError(
                f"{func.__name__} takes {func.min_args} arguments and a stage gives it one: "
                f"bind the others first, e.g. parpy.{func.__name__}.bind(...)"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        self.func = func
        self.workers = _count("workers", workers)
        self.name = _name_of(func) if name is None else name

    def __repr__(self) -> str:
        return f"Stage({self.func!r}, workers={self.workers}, name={self.name!r})"


# ---- statistics --------------------------------------------------------------


class RawStage(NamedTuple):
    """What a runner counts for one stage, times in seconds summed over its
    workers."""

    items_in: int
    items_out: int
    busy: float
    blocked_in: float  # waiting on an empty input
    blocked_out: float  # waiting for room after it


class RawStats(NamedTuple):
    wall: float  # since the run began (to its end, once it ended)
    running: bool
    stages: tuple[RawStage, ...]
    input_blocked: float  # the input waited for room (the in-flight bound)


class StageStats(NamedTuple):
    number: int  # its place in the pipeline, from 0
    name: str
    workers: int
    items_in: int
    items_out: int
    busy: float
    blocked_in: float
    blocked_out: float
    # busy / (usable workers * wall), 0..1: a stage given fewer items than it
    # has workers can keep only that many busy
    utilisation: float


def _utilisation(row: RawStage, workers: int, wall: float) -> float:
    usable = min(workers, max(row.items_in, 1))
    return min(1.0, row.busy / (usable * wall)) if wall > 0 else 0.0


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], summary: str) -> str:
    """A table of text cells and a line under it, as HTML (Jupyter's rendering)."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>{html.escape(summary)}</p>"
    )


class PipelineStats:
    """A pipeline's figures, per stage: ``stats.stages`` (StageStats),
    ``stats.bottleneck`` (the busiest stage's name, by utilisation),
    ``stats.wall`` (seconds), ``stats.running``. Prints as a table and
    renders as HTML in Jupyter."""

    __slots__ = ("backend", "input_blocked", "items", "running", "stages", "wall")

    def __init__(self, backend: str, stages: Sequence[Stage], raw: RawStats | None) -> None:
        self.backend = backend
        self.wall = raw.wall if raw else 0.0
        self.running = raw.running if raw else False
        self.input_blocked = raw.input_blocked if raw else 0.0
        rows = raw.stages if raw else tuple(RawStage(0, 0, 0.0, 0.0, 0.0) for _ in stages)
        self.stages = tuple(
            StageStats(
                i,
                stage.name,
                stage.workers,
                *row,
                _utilisation(row, stage.workers, self.wall),
            )
            for i, (stage, row) in enumerate(zip(stages, rows, strict=True))
        )
        self.items = self.stages[-1].items_out

    @property
    def bottleneck(self) -> str | None:
        """The name of the stage with the highest utilisation; None before any item."""
        best = self._bottleneck()
        return None if best is None else best.name

    def _bottleneck(self) -> StageStats | None:
        if not self.items and not any(s.items_in for s in self.stages):
            return None
        return max(self.stages, key=lambda s: s.utilisation)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "wall": self.wall,
            "running": self.running,
            "items": self.items,
            "input_blocked": self.input_blocked,
            "bottleneck": self.bottleneck,
            "stages": [s._asdict() for s in self.stages],
        }

    _HEAD = ("stage", "workers", "in", "out", "busy s", "wait in s", "wait out s", "busy %")

    def _rows(self) -> list[tuple[str, ...]]:
        best = self._bottleneck()
        return [
            (
                f"{s.number} {s.name}" + (" *" if s is best else ""),
                str(s.workers),
                str(s.items_in),
                str(s.items_out),
                f"{s.busy:.3f}",
                f"{s.blocked_in:.3f}",
                f"{s.blocked_out:.3f}",
                f"{100 * s.utilisation:.0f}",
            )
            for s in self.stages
        ]

    def _summary(self) -> str:
        state = "running" if self.running else "finished"
        text = f"{self.backend} pipeline, {state}: {self.items} items out in {self.wall:.3f} s"
        if self.input_blocked:
            text += f"; the input waited {self.input_blocked:.3f} s for room"
        best = self._bottleneck()
        if best is not None:
            text += f"; bottleneck: {best.name} ({100 * best.utilisation:.0f}% busy)"
        return text

    def __str__(self) -> str:
        rows = [self._HEAD, *self._rows()]
        widths = [max(len(r[c]) for r in rows) for c in range(len(self._HEAD))]
        lines = [
            "  ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        return "\n".join([*lines, self._summary()])

    def _repr_html_(self) -> str:
        return html_table(self._HEAD, self._rows(), self._summary())

    def __repr__(self) -> str:
        return f"<PipelineStats {self._summary()}>"


# ---- stopping ------------------------------------------------------------------

# Seconds a run stopped by Ctrl-C waits for its workers to come to rest.
GRACE = 0.2
# Seconds between looks at the workers while waiting for them.
POLL = 0.05


def settle(at_rest: Callable[[float], bool], interrupted: bool) -> bool:
    """Waits until the workers of a stopped run are at rest; returns whether
    they are. ``at_rest(timeout)`` waits at most timeout and says whether they
    are. After Ctrl-C (``interrupted``) it waits at most :data:`GRACE`; a
    Ctrl-C during the wait ends it at once (the KeyboardInterrupt propagates).
    Workers not at rest are in a Python call: they leave once it returns."""
    deadline = time.monotonic() + GRACE if interrupted else math.inf
    while not at_rest(min(POLL, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return False
    return True


# ---- errors --------------------------------------------------------------------


def stage_note(exc: BaseException, index: int, name: str, position: int) -> None:
    """Notes on exc the stage that raised it and the item's input position."""
    exc.add_note(f"parpy.Pipeline: stages[{index}] ({name}) failed on item {position}")


def input_note(exc: BaseException, position: int) -> None:
    """Notes on exc that the input iterator raised it, reading item position."""
    exc.add_note(f"parpy.Pipeline: the input iterator failed reading item {position}")


# ---- backends ------------------------------------------------------------------


class Runner(Protocol):
    """A backend. One run at a time (the Pipeline sees to it)."""

    def run(self, iterator: Iterator[Any], total: int | None = None) -> Iterator[Any]:
        """A generator of the results; reads iterator (of total items, when
        known) on a thread of its own.
        Closing it, or an exception in the consumer (KeyboardInterrupt),
        stops the run and leaves every worker at rest."""
        ...

    def snapshot(self) -> RawStats | None:
        """The current (or last) run's figures; None before the first."""
        ...

    @property
    def done(self) -> int:
        """Results the current (or last) run has handed out."""
        ...

    def close(self) -> None:
        """Stops a run in progress and releases workers; idempotent."""
        ...


def _runner(backend: str, stages: tuple[Stage, ...], maxsize: int, ordered: bool) -> Runner:
    if backend == "native":
        from parpy._pipe_native import NativeRunner

        return NativeRunner(stages, maxsize, ordered)
    if backend == "threading":
        from parpy._pipe_threads import ThreadRunner

        return ThreadRunner(stages, maxsize, ordered)
    from parpy._pipe_procs import ProcessRunner

    return ProcessRunner(stages, maxsize, ordered)


class Pipeline:
    """Items flow through ``stages`` in turn, each stage with workers of its
    own, at most ``maxsize`` items in flight.

    ``stages`` are :class:`Stage` objects or bare callables (one worker
    each). ``ordered``: results in input order, streamed as soon as every
    earlier one is out; else in completion order. ``backend``: "native"
    (parpy's threads; kernels compute without the GIL and pass C values to
    the next kernel), "threading" or "multiprocessing". ``progress``: a tqdm
    bar of the items out.

    One run at a time: a second map or imap while one is unfinished (in any
    thread) raises RuntimeError.
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
        self.maxsize = _count("maxsize", maxsize)
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
        """The results for every item, as a list."""
        return list(self.imap(items))

    def imap(self, items: Iterable[Any]) -> Iterator[Any]:
        """The results as they leave the last stage; the input is read lazily.

        The run starts at the first ``next()`` (which raises RuntimeError if
        another run of this pipeline is unfinished)."""
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
        """Figures of the run in progress, or of the last one."""
        return PipelineStats(self.backend, self.stages, self._runner.snapshot())

    def close(self) -> None:
        """Stops a run in progress and releases the workers. Idempotent."""
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

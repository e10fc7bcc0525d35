"""What a pipeline's stages and every backend share: :class:`Stage`, the raw
figures a runner counts, how a stopped run settles, the notes on errors, and
the :class:`Runner` protocol that each backend module implements."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from parpy import _core
from parpy._support.dispatch import name_of


def count(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, not {value}")
    return value


class Stage:
    """One step of a :class:`Pipeline`: ``func`` applied to every item.

    Parameters
    ----------
    func : callable
        A parpy kernel (computed on native threads without the GIL), a bound
        kernel (``parpy.fib_mod.bind(m)``) or any Python callable of one
        argument.
    workers : int, default 1
        The stage's own workers.
    name : str, optional
        Labels the stage in errors and :meth:`Pipeline.stats`; by default
        the function's name.

    Raises
    ------
    TypeError
        If ``func`` is not callable or is a kernel of several arguments not
        bound, ``workers`` is not an int, or ``name`` not a str.
    ValueError
        If ``workers`` < 1.
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
        self.workers = count("workers", workers)
        self.name = name_of(func) if name is None else name

    def __repr__(self) -> str:
        return f"Stage({self.func!r}, workers={self.workers}, name={self.name!r})"


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

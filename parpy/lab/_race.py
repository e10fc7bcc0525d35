"""The race (:func:`parpy.lab.race`): threads increment one shared counter, and
updates are lost."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from parpy import _core
from parpy._support.render import palette, plural
from parpy.lab._common import (
    MAX_COUNT,
    MAX_THREADS,
    _choice,
    _count,
    _duration,
    _figure,
    _LabReport,
    _times,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RACE_MODES = ("unsynchronized", "mutex", "atomic", "python")

# The "python" race mode checks its stop flag between chunks of increments.
_PYTHON_CHUNK = 10_000
# How often the Python thread that waits for the "python" race's threads wakes
# up to let Ctrl-C in (seconds).
_JOIN_SLICE = 0.05


def _overlap(spans: Sequence[tuple[float, float]]) -> float:
    """Seconds during which two or more of the spans ran at once."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running, since, total = 0, 0.0, 0.0
    for at, step in edges:
        if running >= 2:
            total += at - since
        running += step
        since = at
    return total


class RaceRun(NamedTuple):
    """One run of the race: ``threads`` threads, ``increments`` each, in one mode."""

    mode: str
    threads: int
    increments: int  # per thread
    expected: int  # threads * increments
    actual: int  # the counter at the end
    lost: int  # expected - actual
    seconds: float  # from the first thread's first increment to the last one's last
    overlap: float  # seconds during which two or more threads were incrementing
    cost: float  # seconds / the unsynchronized run's seconds (inf when that took no time)


class RaceReport(_LabReport):
    """What :func:`race` measured.

    The requested mode's run is ``runs[0]``, whose figures are also the
    report's: ``lost``, ``actual``, ``seconds``, ``cost``, ...

    Parameters
    ----------
    runs : sequence of RaceRun
        The requested mode's run and, when that is a fix, the unsynchronized
        run it is compared to.
    """

    _HEAD = ("mode", "counter", "lost", "lost %", "time", "overlap", "cost")

    def __init__(self, runs: Sequence[RaceRun]) -> None:
        self.runs = tuple(runs)
        run = self.runs[0]
        self.mode = run.mode
        self.threads = run.threads
        self.increments = run.increments
        self.expected = run.expected
        self.actual = run.actual
        self.lost = run.lost
        self.seconds = run.seconds
        self.overlap = run.overlap
        self.cost = run.cost

    def _caption(self) -> str:
        return (
            f"race: {plural(self.threads, 'thread')} x {self.increments:,} increments of "
            f"one shared counter (expected {self.expected:,})"
        )

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                r.mode,
                f"{r.actual:,}",
                f"{r.lost:,}",
                f"{100 * r.lost / r.expected:.1f}%" if r.expected else "-",
                _duration(r.seconds),
                _duration(r.overlap),
                _times(r.cost),
            )
            for r in self.runs
        ]

    def _notes(self) -> list[str]:
        return [self._verdict(r) for r in self.runs]

    def _verdict(self, r: RaceRun) -> str:
        cost = "" if r.mode == "unsynchronized" else f", {_times(r.cost)} the unsynchronized time"
        if r.lost > 0:
            why = {
                "unsynchronized": "between one thread's load and its store of the counter, "
                "the others' increments were overwritten",
                "python": "a thread switch fell between the read and the write of counter += 1",
            }.get(r.mode, "")
            return f"{r.mode}: {r.lost:,} updates lost ({100 * r.lost / r.expected:.1f}%): {why}"
        if r.mode == "unsynchronized":
            if r.threads > 1 and r.overlap == 0:
                return (
                    "unsynchronized: no update lost, because the threads never ran at once "
                    "(more increments, or more CPUs, make them)"
                )
            return "unsynchronized: no update lost this time"
        if r.mode == "python":
            return (
                "python: no update lost: the GIL never switched threads between the read "
                "and the write of counter += 1 (a detail of CPython, not a promise)" + cost
            )
        how = {"mutex": "one thread at a time", "atomic": "one indivisible fetch-add"}[r.mode]
        return f"{r.mode}: exact ({how}){cost}"

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON values.

        Returns
        -------
        dict
            mode, lost, and each run's fields (a cost of inf as None).
        """
        runs = [
            {**r._asdict(), "cost": r.cost if math.isfinite(r.cost) else None} for r in self.runs
        ]
        return {"mode": self.mode, "lost": self.lost, "runs": runs}

    def plot(self) -> Figure:
        """Draw two panels: the counter against the expected total, and the time.

        The first shows what was lost; the second the time of each mode (its
        cost against the unsynchronized run).

        Returns
        -------
        matplotlib.figure.Figure
            The figure (no pyplot state, no display needed).

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        fig, (counts, times) = _figure(2, "RaceReport")
        names = [r.mode for r in self.runs]
        colors = palette(len(names))
        counts.bar(names, [r.actual for r in self.runs], color=colors, label="counter")
        counts.bar(
            names,
            [r.lost for r in self.runs],
            bottom=[r.actual for r in self.runs],
            color="none",
            edgecolor="crimson",
            hatch="//",
            label="lost updates",
        )
        counts.axhline(self.expected, color="black", linestyle=":", label="expected")
        for x, r in enumerate(self.runs):
            counts.annotate(f"{r.lost:,} lost", (x, r.expected), ha="center", va="bottom")
        counts.set(title="The shared counter", ylabel="count", ylim=(0, 1.15 * self.expected or 1))
        counts.legend(loc="lower right", fontsize="small")
        times.bar(names, [r.seconds for r in self.runs], color=colors)
        for x, r in enumerate(self.runs):
            times.annotate(_times(r.cost), (x, r.seconds), ha="center", va="bottom")
        times.set(title="Time, and the cost against unsynchronized", ylabel="seconds")
        if all(r.seconds > 0 for r in self.runs):
            times.set_yscale("log")
            times.margins(y=0.2)
        fig.suptitle(self._caption())
        return fig


def _python_race(threads: int, increments: int) -> tuple[int, list[tuple[float, float]]]:
    """``threads`` Python threads run ``counter += 1`` ``increments`` times each.
    Returns the counter and each thread's (start, end), in seconds."""
    counter = 0
    barrier = threading.Barrier(threads)
    stop = threading.Event()
    spans = [(0.0, 0.0)] * threads

    def work(index: int) -> None:
        nonlocal counter
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the caller gave up
            return
        start = time.perf_counter()
        left = increments
        while left > 0 and not stop.is_set():
            chunk = min(left, _PYTHON_CHUNK)
            left -= chunk
            for _ in range(chunk):
                counter += 1
        spans[index] = (start, time.perf_counter())

    workers = [
        threading.Thread(target=work, args=(i,), name=f"parpy.lab.race-{i}", daemon=True)
        for i in range(threads)
    ]
    started: list[threading.Thread] = []
    try:
        for worker in workers:
            worker.start()
            started.append(worker)
        for worker in workers:
            while worker.is_alive():
                worker.join(_JOIN_SLICE)  # Ctrl-C lands between the slices
    except BaseException:  # Ctrl-C, or a thread that could not start
        stop.set()
        barrier.abort()
        for worker in started:
            worker.join()
        raise
    first = min(start for start, _ in spans)
    return counter, [(start - first, end - first) for start, end in spans]


def _race_run(mode: str, threads: int, increments: int) -> tuple[int, float, float]:
    """The counter, the seconds and the overlap of one run."""
    spans: Sequence[tuple[float, float]]
    if mode == "python":
        counter, spans = _python_race(threads, increments)
    else:
        counter, spans = _core._lab_race(mode, threads, increments)
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return counter, seconds, _overlap(spans)


def race(threads: int = 2, increments: int = 10**6, mode: str = "unsynchronized") -> RaceReport:
    """Native threads each add 1 to one shared counter, ``increments`` times.

    ``mode`` is how the counter is updated:

    - ``"unsynchronized"``: a load of the counter, then a store of the load
      plus one. When two threads interleave, one thread's store overwrites
      the other's increments: updates are really lost (the load and the store
      are relaxed atomics, so the C stays defined behaviour).
    - ``"mutex"``: the increment under a pthread mutex; exact.
    - ``"atomic"``: one atomic fetch-add; exact.
    - ``"python"``: Python ``threading.Thread``\\ s doing ``counter += 1``, for
      comparison.

    The threads wait at a barrier and start together, each on a CPU of its
    own where there are enough (they are pinned), so that they run at once.
    A fix is also timed against an unsynchronized run with the same
    arguments: its ``cost``.

    Parameters
    ----------
    threads : int, default 2
        Threads, 1 to 256.
    increments : int, default 10**6
        Increments each thread does, 0 to 2**40.
    mode : {"unsynchronized", "mutex", "atomic", "python"}, default "unsynchronized"
        How the counter is updated (above).

    Returns
    -------
    RaceReport
        The counter, the updates lost, the time and the cost of each run.

    Raises
    ------
    TypeError
        If ``threads`` or ``increments`` is not an int, or ``mode`` not a str.
    ValueError
        If a number is out of range, or ``mode`` is unknown.
    """
    threads = _count("threads", threads, 1, MAX_THREADS)
    increments = _count("increments", increments, 0, MAX_COUNT)
    mode = _choice("mode", mode, RACE_MODES)
    # The unsynchronized baseline first, then the fix it is compared with.
    modes = [mode] if mode == "unsynchronized" else [mode, "unsynchronized"]
    measured = {m: _race_run(m, threads, increments) for m in reversed(modes)}
    baseline = measured["unsynchronized"][1]
    expected = threads * increments
    runs = []
    for m in modes:
        counter, seconds, overlap = measured[m]
        if baseline > 0:
            cost = seconds / baseline
        else:  # no increments: nothing to compare
            cost = 1.0 if seconds == 0 else math.inf
        runs.append(
            RaceRun(
                mode=m,
                threads=threads,
                increments=increments,
                expected=expected,
                actual=counter,
                lost=expected - counter,
                seconds=seconds,
                overlap=overlap,
                cost=cost,
            )
        )
    return RaceReport(runs)

"""The concurrency lab: race conditions, deadlock, starvation, shared state
versus message passing, happening on native threads and measured.

With the GIL, Python threads hide most of the problems of parallel programs;
on parpy's native threads they really happen. Each function here makes one
happen, safely (bounded in time and memory by its arguments, interrupted by
Ctrl-C within a fraction of a second, every thread joined before it returns),
and returns a report that prints as a table, renders as HTML in Jupyter,
draws itself with :meth:`plot` (matplotlib) and gives its figures with
:meth:`as_dict`:

- :func:`race`: threads increment one shared counter; unsynchronized, updates
  are lost (``report.lost``); a mutex or an atomic fetch-add fixes it, at a
  cost.
- :func:`deadlock`: two threads take two locks in opposite orders and deadlock
  for real; a watchdog finds the cycle, says who holds what and waits for
  what, and breaks it. One lock order, or trylock and back off, never
  deadlock.
- :func:`starvation`: workers compete for one lock; an unfair lock lets the
  thread that just released it take it back, a fair one serves them in turn
  (``report.jain``, Jain's fairness index).
- :func:`shared_vs_messages`: one reduction done on a mutex-protected total
  and by messages to the one thread that owns the total.

The native work is in ``csrc/lab/lab.c``; this module validates the arguments
(``TypeError`` or ``ValueError`` before any thread starts), runs it, and
derives the figures.
"""

from __future__ import annotations

import math
import operator
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from parpy import _core
from parpy._support.render import Table, palette, plural

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEADLOCK_MODES",
    "MAX_THREADS",
    "POLICIES",
    "RACE_MODES",
    "DeadlockReport",
    "MessagesReport",
    "RaceReport",
    "StarvationReport",
    "deadlock",
    "jain_index",
    "race",
    "shared_vs_messages",
    "starvation",
]

RACE_MODES = ("unsynchronized", "mutex", "atomic", "python")
DEADLOCK_MODES = ("opposite_order", "ordered", "trylock")
POLICIES = ("unfair", "fair")
METHODS = ("shared", "messages")

MAX_THREADS = 256  # csrc/lab/lab.c's LAB_MAX_THREADS
MAX_COUNT = 2**40  # increments and rounds: hours of work, far from any overflow
MAX_ITEMS = 2**32  # shared_vs_messages: the sum of 1..items fits in 64 bits
MAX_SECONDS = 10**6  # seconds and timeout: finite, and bounded

LOCKS = ("A", "B")  # the deadlock lab's locks, by index

# The "python" race mode checks its stop flag between chunks of increments.
_PYTHON_CHUNK = 10_000
# How often the Python thread that waits for the "python" race's threads wakes
# up to let Ctrl-C in (seconds).
_JOIN_SLICE = 0.05


# ---- validation ----------------------------------------------------------------


def _count(name: str, value: object, low: int, high: int) -> int:
    """value as an int in [low, high]: TypeError for a non-int (bool too), else ValueError."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    n = operator.index(value)  # type: ignore[arg-type]
    if not low <= n <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {n}")
    return n


def _seconds(name: str, value: object) -> float:
    """value as seconds, > 0 and finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    s = float(value)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"{name} must be > 0 and finite, not {value}")
    if s > MAX_SECONDS:
        raise ValueError(f"{name} must be at most {MAX_SECONDS}, not {value}")
    return s


def _choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


# ---- figures -------------------------------------------------------------------


def jain_index(shares: Sequence[float]) -> float:
    """Return Jain's fairness index of ``shares``: ``(sum x)**2 / (n * sum x**2)``.

    Parameters
    ----------
    shares : sequence of float
        What each of n parties got, each >= 0.

    Returns
    -------
    float
        1.0 when every share is equal (all zero included), ``1/n`` when one
        share is everything.

    Raises
    ------
    ValueError
        If ``shares`` is empty.
    """
    if not shares:
        raise ValueError("jain_index needs at least one share")
    total = sum(shares)
    squares = sum(x * x for x in shares)
    return 1.0 if squares == 0 else total * total / (len(shares) * squares)


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


def _duration(s: float) -> str:
    """Seconds in s, ms or µs, to three significant figures."""
    unit, scale = ("s", 1.0) if s >= 1 else ("ms", 1e3) if s >= 1e-3 else ("µs", 1e6)
    value = s * scale
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:#.3g} {unit}"


def _times(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.2f}x" if x < 10 else f"{x:.0f}x"


# ---- the reports ---------------------------------------------------------------


class _LabReport:
    """A table (a caption, headings, rows of strings) and notes below it."""

    _HEAD: tuple[str, ...] = ()

    def _caption(self) -> str:
        raise NotImplementedError

    def _rows(self) -> list[tuple[str, ...]]:
        raise NotImplementedError

    def _notes(self) -> list[str]:
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """The figures, as JSON values."""
        raise NotImplementedError

    def plot(self) -> Figure:
        """The figures, drawn: a matplotlib Figure (no pyplot state, no display needed)."""
        raise NotImplementedError

    def _table(self) -> Table:
        return Table("lab", self._HEAD, self._rows(), self._caption(), self._notes())

    def __str__(self) -> str:
        return self._table().text()

    def _repr_html_(self) -> str:
        return self._table().html()

    def __repr__(self) -> str:
        return f"<parpy.lab.{type(self).__name__}: {self._notes()[0]}>"


def _figure(panels: int, what: str) -> tuple[Figure, list[Axes]]:
    """A constrained-layout Figure with ``panels`` side by side, matplotlib imported now."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            f"{what}.plot() needs matplotlib: pip install matplotlib "
            "(or pip install 'parpy[notebook]')"
        ) from None
    fig = Figure(figsize=(5.5 * panels, 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


# ---- race ------------------------------------------------------------------------


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


# ---- deadlock --------------------------------------------------------------------


class DeadlockThread(NamedTuple):
    """One of the deadlock lab's two threads. What it held and waited for is
    as the watchdog found it (None without a deadlock); times are seconds
    from the start."""

    name: str  # "thread 0", "thread 1"
    order: str  # the order it takes the locks, "A then B"
    rounds: int  # rounds it completed (both locks taken and released)
    backoffs: int  # trylock: times it released its first lock and retried
    holds: str | None  # the lock it held
    waits_for: str | None  # the lock it waited for
    held_since: float | None
    waiting_since: float | None
    victim: bool  # the watchdog made it give up its wait
    took_second: float | None  # when it took the lock it waited for, after all
    released: float  # when it had let go of every lock and returned


class DeadlockReport(_LabReport):
    """What :func:`deadlock` measured.

    ``deadlocked``: the watchdog found a cycle; ``detected``: when, in
    seconds from the start (None without one); ``cycle``: who held what and
    waited for what; ``victim``: the thread the watchdog made give up;
    ``seconds``: until both threads had returned; ``threads``: a
    :class:`DeadlockThread` each; ``recovered``: every thread joined and the
    locks destroyed (always True once the call returns).

    Parameters
    ----------
    mode : str
        The mode that ran.
    timeout : float
        The watchdog's timeout, in seconds.
    rounds : int
        The rounds each thread was to do.
    seconds : float
        Until both threads had returned.
    detected : float or None
        When the watchdog found a cycle; None without one.
    threads : sequence of DeadlockThread
        The two threads.
    """

    _HEAD = ("thread", "order", "rounds", "back-offs", "holds", "waits for", "waited")

    def __init__(
        self,
        *,
        mode: str,
        timeout: float,
        rounds: int,
        seconds: float,
        detected: float | None,
        threads: Sequence[DeadlockThread],
    ) -> None:
        self.mode = mode
        self.timeout = timeout
        self.rounds = rounds
        self.seconds = seconds
        self.detected = detected
        self.threads = tuple(threads)
        self.deadlocked = detected is not None
        self.recovered = True
        self.backoffs = sum(t.backoffs for t in self.threads)
        self.victim = next((t.name for t in self.threads if t.victim), None)
        self.cycle = (
            "; ".join(f"{t.name} holds {t.holds} and waits for {t.waits_for}" for t in self.threads)
            if self.deadlocked
            else None
        )

    def _waited(self, t: DeadlockThread) -> float | None:
        if self.detected is None or t.waiting_since is None:
            return None
        return self.detected - t.waiting_since

    def _caption(self) -> str:
        return (
            f"deadlock, {self.mode}: 2 threads, 2 locks (A, B), {self.rounds:,} rounds each, "
            f"watchdog timeout {_duration(self.timeout)}"
        )

    def _rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for t in self.threads:
            waited = self._waited(t)
            rows.append(
                (
                    t.name + (" (victim)" if t.victim else ""),
                    t.order,
                    f"{t.rounds:,}",
                    f"{t.backoffs:,}",
                    t.holds or "-",
                    t.waits_for or "-",
                    "-" if waited is None else _duration(waited),
                )
            )
        return rows

    def _notes(self) -> list[str]:
        if self.deadlocked:
            assert self.detected is not None
            victim = next(t for t in self.threads if t.victim)
            other = next(t for t in self.threads if not t.victim)
            return [
                f"deadlock: {self.cycle}: a cycle, so neither could go on",
                f"the watchdog found it {_duration(self.detected)} after the start (a wait had "
                f"lasted the timeout) and broke it: {victim.name}, the victim, gave up its wait "
                f"for {victim.waits_for} and released {victim.holds}; {other.name} then took "
                f"{victim.holds} and finished its {plural(other.rounds, 'round')}; both threads "
                f"had returned {_duration(self.seconds)} after the start",
            ]
        how = {
            "opposite_order": "no cycle formed",
            "ordered": "both take A before B, so no cycle can form",
            "trylock": f"{plural(self.backoffs, 'back-off')}: a thread that finds its second "
            "lock taken releases its first and retries after a random pause",
        }[self.mode]
        total = sum(t.rounds for t in self.threads)
        return [f"no deadlock: {total:,} rounds in {_duration(self.seconds)}; {how}"]

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON values.

        Returns
        -------
        dict
            The report's figures, and each thread's fields.
        """
        return {
            "mode": self.mode,
            "timeout": self.timeout,
            "rounds": self.rounds,
            "deadlocked": self.deadlocked,
            "detected": self.detected,
            "cycle": self.cycle,
            "victim": self.victim,
            "seconds": self.seconds,
            "backoffs": self.backoffs,
            "recovered": self.recovered,
            "threads": [t._asdict() for t in self.threads],
        }

    def plot(self) -> Figure:
        """Draw the deadlock: the wait-for graph and a timeline; or the rounds.

        With a deadlock: the wait-for graph the watchdog found (who holds
        what, who waits for what: a cycle), and a timeline of each thread
        holding and waiting until the watchdog broke the cycle. Without: the
        rounds and back-offs of each thread.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (no pyplot state, no display needed).

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        if not self.deadlocked:
            fig, (rounds, backoffs) = _figure(2, "DeadlockReport")
            names = [t.name for t in self.threads]
            rounds.bar(names, [t.rounds for t in self.threads])
            rounds.set(ylabel="rounds", title=self._notes()[0].split(";")[0])
            backoffs.bar(names, [t.backoffs for t in self.threads], color="tab:gray")
            backoffs.set(ylabel="back-offs", title="Back-offs (trylock)")
            fig.suptitle(self._caption())
            return fig
        fig, (graph, timeline) = _figure(2, "DeadlockReport")
        self._draw_graph(graph)
        self._draw_timeline(timeline)
        fig.suptitle(self._caption())
        return fig

    def _draw_graph(self, ax: Axes) -> None:
        at = {"thread 0": (0.0, 1.0), "thread 1": (1.0, 0.0), "A": (1.0, 1.0), "B": (0.0, 0.0)}
        arrow = dict(arrowstyle="-|>", mutation_scale=18, shrinkA=28, shrinkB=28)
        for t in self.threads:
            assert t.holds is not None and t.waits_for is not None
            ax.annotate("", at[t.name], at[t.holds], arrowprops=dict(arrow, color="black"))
            ax.annotate(
                "",
                at[t.waits_for],
                at[t.name],
                arrowprops=dict(arrow, color="crimson", linestyle="--"),
            )
        for name, (x, y) in at.items():
            lock = name in LOCKS
            ax.text(
                x,
                y,
                f"lock {name}" if lock else name,
                ha="center",
                va="center",
                bbox=dict(boxstyle="square" if lock else "circle", facecolor="white"),
            )
        ax.plot([], [], color="black", label="held by")
        ax.plot([], [], color="crimson", linestyle="--", label="waits for")
        ax.legend(loc="center", fontsize="small")
        ax.set(xlim=(-0.4, 1.4), ylim=(-0.4, 1.4), title="Wait-for graph: a cycle")
        ax.set_axis_off()

    def _draw_timeline(self, ax: Axes) -> None:
        assert self.detected is not None
        labels = ["holds its first lock", "waits for its second", "its other rounds"]
        for y, t in enumerate(self.threads):
            assert t.held_since is not None and t.waiting_since is not None
            got = t.took_second if t.took_second is not None else t.released
            bars: list[tuple[float, float, float, dict[str, Any]]] = [
                (y + 0.2, t.held_since, got, dict(color="tab:blue")),
                (y, t.waiting_since, got, dict(color="crimson", hatch="//", alpha=0.6)),
                (y - 0.2, got, t.released, dict(color="tab:gray")),
            ]
            for (row, start, end, style), label in zip(bars, labels, strict=True):
                if end > start:
                    ax.barh(row, end - start, left=start, height=0.2, label=label, **style)
        ax.axvline(self.detected, color="black", linestyle=":", label="the watchdog")
        ax.set_yticks(
            range(len(self.threads)),
            [t.name + ("\n(victim)" if t.victim else "") for t in self.threads],
        )
        ax.set(xlabel="seconds from the start", title="Timeline")
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        ax.legend(
            unique.values(),
            unique.keys(),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.18),
            ncols=2,
            fontsize="small",
        )


def deadlock(
    mode: str = "opposite_order", timeout: float = 1.0, *, rounds: int = 10_000
) -> DeadlockReport:
    """Two native threads take two locks, A and B, ``rounds`` times each.

    ``mode``:

    - ``"opposite_order"``: thread 0 takes A then B, thread 1 takes B then A.
      In the first round both hold their first lock before either asks for
      its second (a barrier), so they deadlock, for certain. A watchdog (the
      calling thread) watches what each thread holds and waits for; once a
      wait has lasted ``timeout`` seconds (as PostgreSQL's
      ``deadlock_timeout``) and the waits form a cycle, it records who holds
      what and waits for what, and breaks the cycle: the thread whose wait
      began last (the victim) gives up its wait (waits here are timed:
      trylock loops), releases its lock and returns; the other takes that
      lock and finishes its rounds. The call returns within about
      ``timeout`` seconds.
    - ``"ordered"``: both take A then B (one global lock order): no cycle can
      form.
    - ``"trylock"``: opposite orders, but the second lock is only tried; a
      thread that finds it taken releases its first and retries after a
      random, growing pause (back-off). The first round starts with both
      holding their first lock, so at least one backs off.

    Every thread is joined and every lock destroyed before it returns,
    whatever happened.

    Parameters
    ----------
    mode : {"opposite_order", "ordered", "trylock"}, default "opposite_order"
        How the threads take the locks (above).
    timeout : float, default 1.0
        Seconds a wait lasts before the watchdog looks for a cycle; > 0 and
        at most 10**6.
    rounds : int, default 10_000
        Rounds each thread does, 0 to 2**40.

    Returns
    -------
    DeadlockReport
        Whether they deadlocked, the cycle and its victim, and each thread's
        rounds and back-offs.

    Raises
    ------
    TypeError
        If ``mode`` is not a str, ``timeout`` not a number or ``rounds`` not
        an int.
    ValueError
        If ``mode`` is unknown, or a number is out of range.
    """
    mode = _choice("mode", mode, DEADLOCK_MODES)
    timeout = _seconds("timeout", timeout)
    rounds = _count("rounds", rounds, 0, MAX_COUNT)
    seconds, detected, victim, raw = _core._lab_deadlock(mode, timeout, rounds)
    threads = []
    for index, row in enumerate(raw):
        done, backoffs, released, held, waits, held_since, waiting_since, took_second = row
        first = 0 if mode == "ordered" else index
        threads.append(
            DeadlockThread(
                name=f"thread {index}",
                order=f"{LOCKS[first]} then {LOCKS[1 - first]}",
                rounds=done,
                backoffs=backoffs,
                holds=None if held is None else LOCKS[held],
                waits_for=None if waits is None else LOCKS[waits],
                held_since=held_since,
                waiting_since=waiting_since,
                victim=index == victim,
                took_second=took_second,
                released=released,
            )
        )
    return DeadlockReport(
        mode=mode,
        timeout=timeout,
        rounds=rounds,
        seconds=seconds,
        detected=detected,
        threads=threads,
    )


# ---- starvation ------------------------------------------------------------------


class StarvationReport(_LabReport):
    """What :func:`starvation` measured.

    Per worker: ``acquisitions``, ``longest_wait`` and ``mean_wait``
    (seconds); ``jain``, Jain's fairness index of the acquisitions (1.0:
    perfectly fair; 1/workers: one worker got everything); ``throughput``,
    acquisitions per second in all.

    Parameters
    ----------
    policy : str
        The lock's policy.
    seconds : float
        How long the workers competed.
    acquisitions : sequence of int
        Each worker's acquisitions of the lock.
    longest_wait : sequence of float
        Each worker's longest wait, in seconds.
    total_wait : sequence of float
        Each worker's waits summed, in seconds.

    Raises
    ------
    ValueError
        If there is no worker.
    """

    _HEAD = ("worker", "acquisitions", "share", "longest wait", "mean wait")

    def __init__(
        self,
        *,
        policy: str,
        seconds: float,
        acquisitions: Sequence[int],
        longest_wait: Sequence[float],
        total_wait: Sequence[float],
    ) -> None:
        self.policy = policy
        self.workers = len(acquisitions)
        self.seconds = seconds
        self.acquisitions = tuple(acquisitions)
        self.longest_wait = tuple(longest_wait)
        self.mean_wait = tuple(
            w / (n + 1) for w, n in zip(total_wait, acquisitions, strict=True)
        )  # the waits include one cut short by the end
        self.total = sum(self.acquisitions)
        self.jain = jain_index(self.acquisitions)
        self.throughput = self.total / seconds

    def _caption(self) -> str:
        lock = {"unfair": "a mutex that barges", "fair": "a ticket lock"}[self.policy]
        return (
            f"starvation, {self.policy}: {plural(self.workers, 'worker')} competing for one "
            f"lock ({lock}) for {_duration(self.seconds)}"
        )

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                str(i),
                f"{n:,}",
                f"{100 * n / self.total:.1f}%" if self.total else "-",
                _duration(longest),
                _duration(mean),
            )
            for i, (n, longest, mean) in enumerate(
                zip(self.acquisitions, self.longest_wait, self.mean_wait, strict=True)
            )
        ]

    def _notes(self) -> list[str]:
        starved = max(self.longest_wait)
        return [
            f"Jain's fairness index {self.jain:.3f} (1.0: perfectly fair; "
            f"{1 / self.workers:.2f}: one worker got everything); "
            f"{self.total:,} acquisitions, {self.throughput:,.0f} a second",
            f"the longest any worker waited: {_duration(starved)}",
        ]

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON values.

        Returns
        -------
        dict
            policy, workers, seconds, the per-worker figures, jain, throughput.
        """
        return {
            "policy": self.policy,
            "workers": self.workers,
            "seconds": self.seconds,
            "acquisitions": list(self.acquisitions),
            "longest_wait": list(self.longest_wait),
            "mean_wait": list(self.mean_wait),
            "jain": self.jain,
            "throughput": self.throughput,
        }

    def plot(self) -> Figure:
        """Draw two panels: acquisitions per worker, and each worker's longest wait.

        The acquisitions are drawn against an equal share.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (no pyplot state, no display needed).

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        fig, (counts, waits) = _figure(2, "StarvationReport")
        names = [str(i) for i in range(self.workers)]
        counts.bar(names, self.acquisitions)
        counts.axhline(self.total / self.workers, color="black", linestyle=":", label="fair share")
        counts.set(
            xlabel="worker", ylabel="acquisitions", title=f"Acquisitions (Jain {self.jain:.3f})"
        )
        counts.legend(fontsize="small")
        waits.bar(names, [w * 1e3 for w in self.longest_wait], color="crimson")
        waits.set(xlabel="worker", ylabel="milliseconds", title="Longest wait for the lock")
        fig.suptitle(self._caption())
        return fig


def starvation(workers: int = 4, seconds: float = 1.0, policy: str = "unfair") -> StarvationReport:
    """``workers`` native threads compete for one lock for ``seconds``.

    Each takes the lock, does a short critical section (a fraction of a
    microsecond) and asks for it again at once. ``policy``:

    - ``"unfair"``: a pthread mutex. A worker that finds it taken tries again
      after a short sleep, while the worker that just released it takes it
      back within nanoseconds (barging): the lock goes to whoever holds it
      and the CPU, not to whoever has waited longest, and the others starve
      until the holder is descheduled at the right moment.
    - ``"fair"``: a ticket lock, first come first served, where a worker
      draws its next ticket before it releases its turn: the workers take
      turns in strict rotation, and a worker that is descheduled holds up
      everyone (fairness costs throughput).

    Parameters
    ----------
    workers : int, default 4
        Threads, 1 to 256.
    seconds : float, default 1.0
        How long they compete; > 0 and at most 10**6.
    policy : {"unfair", "fair"}, default "unfair"
        The lock (above).

    Returns
    -------
    StarvationReport
        Acquisitions and the longest wait per worker, and Jain's fairness
        index (``report.jain``).

    Raises
    ------
    TypeError
        If ``workers`` is not an int, ``seconds`` not a number or ``policy``
        not a str.
    ValueError
        If a number is out of range, or ``policy`` is unknown.
    """
    workers = _count("workers", workers, 1, MAX_THREADS)
    seconds = _seconds("seconds", seconds)
    policy = _choice("policy", policy, POLICIES)
    elapsed, rows = _core._lab_starvation(policy, workers, seconds)
    acquisitions, longest, total = zip(*rows, strict=True)
    return StarvationReport(
        policy=policy,
        seconds=elapsed,
        acquisitions=acquisitions,
        longest_wait=longest,
        total_wait=total,
    )


# ---- shared state versus message passing -----------------------------------------


class ReduceRun(NamedTuple):
    """One reduction: the sum of 1..items by ``threads`` threads, one way."""

    method: str  # "shared" or "messages"
    threads: int  # threads adding (shared) or sending (messages; plus one owner)
    items: int
    seconds: float
    throughput: float  # items a second
    # Seconds the adding or sending threads waited, summed over them: for the
    # lock (shared), for room in the bounded queue (messages).
    contention: float
    # messages: seconds the owner of the total waited for a message (0 for shared).
    idle: float


class MessagesReport(_LabReport):
    """What :func:`shared_vs_messages` measured.

    Per thread count, the throughputs, ``shared`` and ``messages`` (dicts,
    items a second), and the contention of each, ``shared_contention`` and
    ``messages_contention`` (dicts, seconds).

    Parameters
    ----------
    runs : sequence of ReduceRun
        Each method's run at each thread count.
    """

    _HEAD = ("threads", "method", "time", "items/s", "contention", "of thread time", "owner idle")

    def __init__(self, runs: Sequence[ReduceRun]) -> None:
        self.runs = tuple(runs)
        self.items = self.runs[0].items
        self.threads = tuple(dict.fromkeys(r.threads for r in self.runs))
        self.shared = {r.threads: r.throughput for r in self.runs if r.method == "shared"}
        self.messages = {r.threads: r.throughput for r in self.runs if r.method == "messages"}
        self.shared_contention = {
            r.threads: r.contention for r in self.runs if r.method == "shared"
        }
        self.messages_contention = {
            r.threads: r.contention for r in self.runs if r.method == "messages"
        }

    @staticmethod
    def _share(r: ReduceRun) -> float:
        """The contention as a share of the adding or sending threads' time."""
        return r.contention / (r.threads * r.seconds) if r.seconds > 0 else 0.0

    def _caption(self) -> str:
        return (
            f"shared state vs message passing: the sum of 1..{self.items:,}, by a "
            "mutex-protected total (shared) and by messages to the thread that owns it "
            "(messages: one value a message, over a bounded queue of 1024)"
        )

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                str(r.threads),
                r.method,
                _duration(r.seconds),
                f"{r.throughput:,.0f}",
                _duration(r.contention),
                f"{100 * self._share(r):.0f}%",
                _duration(r.idle) if r.method == "messages" else "-",
            )
            for r in self.runs
        ]

    def _notes(self) -> list[str]:
        notes = []
        for p in self.threads:
            shared, messages = self.shared[p], self.messages[p]
            faster = "shared" if shared >= messages else "messages"
            ratio = max(shared, messages) / max(min(shared, messages), 1e-9)
            notes.append(f"{plural(p, 'thread')}: {faster} {ratio:.1f}x faster; every total exact")
        notes.append(
            "contention: time the adding threads waited for the lock (shared), or the sending "
            "threads for room in the queue (messages), summed over them; owner idle: time the "
            "owner of the total waited for a message"
        )
        return notes

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON values.

        Returns
        -------
        dict
            items, and each run's fields.
        """
        return {"items": self.items, "runs": [r._asdict() for r in self.runs]}

    def plot(self) -> Figure:
        """Draw two panels against the thread count: throughput, and contention.

        For each method, the items a second and the share of the threads'
        time lost to contention.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (no pyplot state, no display needed).

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        fig, (speed, lost) = _figure(2, "MessagesReport")
        for method, color in zip(METHODS, palette(2), strict=True):
            runs = [r for r in self.runs if r.method == method]
            ps = [r.threads for r in runs]
            millions = [r.throughput / 1e6 for r in runs]
            speed.plot(ps, millions, marker="o", color=color, label=method)
            lost.plot(
                ps, [100 * self._share(r) for r in runs], marker="o", color=color, label=method
            )
        speed.set(xlabel="threads", ylabel="million items a second", title="Throughput")
        lost.set(
            xlabel="threads",
            ylabel="% of the threads' time",
            title="Time lost to contention",
        )
        for ax in (speed, lost):
            ax.set_xticks(self.threads, [str(p) for p in self.threads])
            ax.set_ylim(bottom=0)
            ax.legend(fontsize="small")
            ax.grid(True, alpha=0.25)
        fig.suptitle(f"The sum of 1..{self.items:,}: a shared total against messages")
        return fig


def shared_vs_messages(
    threads: int | Iterable[int] = (1, 2, 4), items: int = 10**6
) -> MessagesReport:
    """One reduction, the sum of 1..items, done two ways at each thread count.

    - ``"shared"``: each thread adds its share of the values, one at a time,
      to one total under a pthread mutex.
    - ``"messages"``: each thread sends its values, one per message, over
      parpy's bounded native queue (a ring of 1024) to one more thread, which
      owns the total and is the only one to touch it.

    Both totals are checked against the closed form, ``items * (items + 1) //
    2``.

    Parameters
    ----------
    threads : int or iterable of int, default (1, 2, 4)
        The thread counts, each 1 to 256.
    items : int, default 10**6
        The values summed, 0 to 2**32.

    Returns
    -------
    MessagesReport
        Items a second for each method at each thread count, and the time
        lost to contention (waiting for the lock; waiting for room in the
        queue).

    Raises
    ------
    TypeError
        If a thread count or ``items`` is not an int.
    ValueError
        If there is no thread count, or a number is out of range.
    RuntimeError
        If a total is not the closed form's (a bug in the lab, not a lesson).
    """
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts:
        raise ValueError("threads must name at least one thread count")
    counts = [_count("threads", p, 1, MAX_THREADS) for p in counts]
    items = _count("items", items, 0, MAX_ITEMS)
    expected = items * (items + 1) // 2
    runs = []
    for p in counts:
        for method in METHODS:
            total, seconds, waited = _core._lab_reduce(method, p, items)
            if total != expected:  # a bug in the lab, not a lesson
                raise RuntimeError(f"{method} on {p} threads summed {total}, not {expected}")
            runs.append(
                ReduceRun(
                    method=method,
                    threads=p,
                    items=items,
                    seconds=seconds,
                    throughput=items / seconds if seconds > 0 else 0.0,
                    contention=sum(waited[:p]),
                    idle=sum(waited[p:]),
                )
            )
    return MessagesReport(runs)

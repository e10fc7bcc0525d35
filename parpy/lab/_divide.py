"""Divide and conquer (:func:`parpy.lab.divide_and_conquer`): one huge F(n), and its decimal
digits, split over threads; the recursion's work and span against the speedup measured."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from parpy import _core
from parpy._support.render import palette, plural
from parpy.lab._common import MAX_THREADS, _count, _duration, _figure, _LabReport, _times

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COMPUTATIONS = ("fib", "to_decimal")
# F(10**9) has 694 million bits and 209 million digits: minutes on one core, and at most
# 2 * 2**13 tasks in a trace (csrc/lab/divide.c records 2**16).
MAX_N = 10**9
MAX_REPEAT = 1000
# The tasks' kinds (csrc/kernels/divide.c), in the order of their colours.
KINDS = ("start", "square", "split", "join", "combine", "powers", "divide", "digits")


class Task(NamedTuple):
    """One task of a split computation, as csrc/kernels/divide.c recorded it."""

    what: str  # "square", "combine", ... (KINDS)
    step: int  # the doubling step (fib), or the depth in the tree (to_decimal)
    thread: int
    bits: int  # the size of its operand
    start: float  # seconds from the first task's start
    end: float
    deps: tuple[int, ...]  # the indices of the tasks whose results it took


class DivideRun(NamedTuple):
    """One computation: its trace's work and span, and its times at 1 and ``workers``."""

    computation: str  # "fib" (F(n)) or "to_decimal" (its digits)
    workers: int
    threads: int  # the threads the split used
    tasks: int
    work: float  # seconds: the tasks' times summed
    span: float  # seconds: the longest chain of tasks, each taking another's result
    parallelism: float  # work / span
    serial: float  # seconds of the traced run during which one task alone ran
    elapsed: float  # seconds of the traced run, first start to last end
    one: float  # median seconds of the call on 1 worker
    many: float  # median seconds of the call on ``workers``
    speedup: float  # one / many (inf when many took no time)
    bound: float  # min(threads, parallelism): what work and span allow on the threads


def _span(tasks: Sequence[Task]) -> tuple[float, list[int]]:
    """The longest chain of dependent tasks: its seconds and its tasks' indices, first first.
    A task is recorded when it ends, after the tasks it depends on: deps are earlier indices."""
    finish: list[float] = []
    previous: list[int] = []
    for i, task in enumerate(tasks):
        if any(d >= i for d in task.deps):
            raise RuntimeError(f"task {i} depends on a later task: {task}")
        before = max(task.deps, key=finish.__getitem__, default=-1)
        finish.append(task.end - task.start + (finish[before] if before >= 0 else 0.0))
        previous.append(before)
    i = max(range(len(tasks)), key=finish.__getitem__)
    span, path = finish[i], []
    while i >= 0:
        path.append(i)
        i = previous[i]
    return span, path[::-1]


def _alone(tasks: Sequence[Task]) -> float:
    """Seconds during which exactly one of the tasks ran."""
    edges = sorted([(t.start, 1) for t in tasks] + [(t.end, -1) for t in tasks])
    running, since, total = 0, 0.0, 0.0
    for at, step in edges:
        if running == 1:
            total += at - since
        running += step
        since = at
    return total


class DivideReport(_LabReport):
    """What :func:`divide_and_conquer` measured.

    ``runs`` holds one :class:`DivideRun` a computation, also named
    ``fib`` (F(n)) and ``to_decimal`` (its digits); ``tasks`` their traces
    (a tuple of :class:`Task` per computation, by name).

    Parameters
    ----------
    n : int
        The index of F(n).
    runs : sequence of DivideRun
        The fib and the to_decimal run, in that order.
    tasks : dict of str to sequence of Task
        Each computation's trace.
    cpus : int
        The CPUs of the machine (``os.cpu_count()``).
    cpus_available : int
        The CPUs this process may run on.
    """

    def __init__(
        self,
        n: int,
        runs: Sequence[DivideRun],
        tasks: dict[str, Sequence[Task]],
        cpus: int,
        cpus_available: int,
    ) -> None:
        self.n = n
        self.runs = tuple(runs)
        self.fib, self.to_decimal = self.runs
        self.workers = self.fib.workers
        self.tasks = {name: tuple(trace) for name, trace in tasks.items()}
        self.cpus = cpus
        self.cpus_available = cpus_available
        self._HEAD = (
            "computation",
            "threads",
            "tasks",
            "work",
            "span",
            "work/span",
            "1 worker",
            plural(self.workers, "worker"),
            "speedup",
            "bound",
        )

    def _caption(self) -> str:
        return (
            f"divide and conquer: F({self.n:,}) and its decimal digits, split over threads "
            f"(workers={self.workers}; {plural(self.cpus, 'CPU')}, {self.cpus_available} "
            "available)"
        )

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                r.computation,
                str(r.threads),
                f"{r.tasks:,}",
                _duration(r.work),
                _duration(r.span),
                _times(r.parallelism),
                _duration(r.one),
                _duration(r.many),
                _times(r.speedup),
                _times(r.bound),
            )
            for r in self.runs
        ]

    def _notes(self) -> list[str]:
        fib, dec = self.runs
        notes = [
            f"F({self.n:,}) on {plural(self.workers, 'worker')}: fib {_times(fib.speedup)}, "
            f"to_decimal {_times(dec.speedup)} the speed on 1 worker (work and span allow "
            f"{_times(fib.bound)} and {_times(dec.bound)})",
            f"fib: each doubling step's two squarings are independent, the steps are not: "
            f"the start and each step's combine wait for what came before; one task ran alone "
            f"{self._share(fib)} of the traced run",
            f"to_decimal: the halves below a division by a shared power of ten convert "
            f"independently, but the powers and the top division come first, on one thread "
            f"(Amdahl's serial part): one task ran alone {self._share(dec)} of the traced run",
            "work: the tasks' times summed; span: the longest chain of tasks each taking "
            "another's result; work/span: the most any number of threads can gain; "
            "bound: min(threads, work/span)",
        ]
        over = [r for r in self.runs if r.work > r.one]
        if over:
            notes.append(
                "the work exceeds the call's time on 1 worker ("
                + ", ".join(f"{r.computation} {_times(r.work / r.one)}" for r in over)
                + "): the split's overhead, which work/span does not see and the speedup pays"
            )
        threads = max(r.threads for r in self.runs)
        if self.cpus_available < threads:
            notes.append(
                f"{plural(self.cpus_available, 'CPU')} available for {threads} threads: "
                "they take turns, the tasks' times include their waits for a CPU, and the "
                "speedup cannot reach the bound"
            )
        return notes

    @staticmethod
    def _share(r: DivideRun) -> str:
        return f"{100 * r.serial / r.elapsed:.0f}%" if r.elapsed > 0 else "-"

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON values.

        Returns
        -------
        dict
            n, workers, cpus, cpus_available, each run's fields (a speedup of
            inf as None) and each computation's tasks.
        """
        runs = [
            {**r._asdict(), "speedup": r.speedup if math.isfinite(r.speedup) else None}
            for r in self.runs
        ]
        return {
            "n": self.n,
            "workers": self.workers,
            "cpus": self.cpus,
            "cpus_available": self.cpus_available,
            "runs": runs,
            "tasks": {
                name: [{**t._asdict(), "deps": list(t.deps)} for t in trace]
                for name, trace in self.tasks.items()
            },
        }

    def plot(self) -> Figure:
        """Draw each computation's tasks on its threads, and the speedups.

        One timeline a computation (a row per thread, a bar per task,
        coloured by kind, the span's chain outlined), and the speedup
        measured against the bound that work and span allow.

        Returns
        -------
        matplotlib.figure.Figure
            The figure (no pyplot state, no display needed).

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        fig, (fib, dec, speed) = _figure(3, "DivideReport")
        colors = dict(zip(KINDS, palette(len(KINDS)), strict=True))
        for ax, r in ((fib, self.fib), (dec, self.to_decimal)):
            self._draw_tasks(ax, r, colors)
        names = [r.computation for r in self.runs]
        xs = range(len(names))
        speed.bar(
            [x - 0.2 for x in xs],
            [r.bound for r in self.runs],
            0.4,
            color="tab:gray",
            label="bound: min(threads, work/span)",
        )
        speed.bar(
            [x + 0.2 for x in xs],
            [r.speedup for r in self.runs],
            0.4,
            color="tab:blue",
            label=f"measured, {plural(self.workers, 'worker')}",
        )
        for x, r in zip(xs, self.runs, strict=True):
            speed.annotate(_times(r.speedup), (x + 0.2, r.speedup), ha="center", va="bottom")
        speed.axhline(1, color="black", linewidth=0.8)
        speed.axhline(
            self.cpus_available,
            color="crimson",
            linestyle=":",
            label=f"CPUs available ({self.cpus_available})",
        )
        speed.set_xticks(list(xs), names)
        speed.set(ylabel="speedup over 1 worker", title="Speedup and its bound")
        speed.set_ylim(bottom=0)
        speed.margins(y=0.15)
        _legend_below(speed, 1)
        fig.suptitle(self._caption())
        return fig

    def _draw_tasks(self, ax: Axes, r: DivideRun, colors: dict[str, str]) -> None:
        """A row a thread, a bar a task coloured by its kind; the span's chain outlined."""
        from matplotlib.patches import Patch

        trace = self.tasks[r.computation]
        chain = set(_span(trace)[1])
        bars: dict[tuple[str, int, bool], list[tuple[float, float]]] = {}
        for i, t in enumerate(trace):
            bars.setdefault((t.what, t.thread, i in chain), []).append(
                (1e3 * t.start, 1e3 * (t.end - t.start))
            )
        for (kind, thread, on_chain), ranges in bars.items():
            ax.broken_barh(
                ranges,
                (thread - 0.4, 0.8),
                facecolors=colors[kind],
                edgecolor="black" if on_chain else "none",
                linewidth=1.2,
            )
        kinds = [kind for kind in KINDS if any(t.what == kind for t in trace)]
        handles = [Patch(color=colors[kind], label=kind) for kind in kinds]
        handles.append(Patch(facecolor="none", edgecolor="black", label="the span's chain"))
        threads = sorted({t.thread for t in trace})
        ax.set_yticks(threads, [f"thread {t}" for t in threads])
        ax.invert_yaxis()
        ax.set(
            xlabel="ms from the first task",
            title=f"{r.computation}: work {_duration(r.work)}, span {_duration(r.span)}",
        )
        _legend_below(ax, 2, handles)


def _legend_below(ax: Axes, columns: int, handles: list[Any] | None = None) -> None:
    ax.legend(
        handles=handles,
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncols=columns,
        frameon=False,
    )


def _smallest_split(workers: int) -> int:
    """The smallest n whose F(n) parpy.fib splits over ``workers`` threads."""
    low, high = 0, MAX_N  # F(MAX_N) is split
    while low < high:
        middle = (low + high) // 2
        if _core._split_threads(_core.fib, middle, workers) > 1:
            high = middle
        else:
            low = middle + 1
    return low


def _timed(
    call: Callable[..., Any], x: int, workers: int, repeat: int, expected: object
) -> tuple[float, float]:
    """The median seconds of call(x, workers=1) and of call(x, workers=workers), run in turn
    ``repeat`` times each; every result checked against ``expected``."""
    seconds: dict[int, list[float]] = {1: [], workers: []}
    for _ in range(repeat):
        for w, times in seconds.items():
            start = time.perf_counter()
            value = call(x, workers=w)
            times.append(time.perf_counter() - start)
            if value != expected:  # a bug in parpy, not a lesson
                raise RuntimeError(
                    f"{call.__name__} on {plural(w, 'worker')} differs from the traced split"
                )
            del value
    return statistics.median(seconds[1]), statistics.median(seconds[workers])


def _run(name: str, x: int, workers: int, repeat: int) -> tuple[Any, DivideRun, list[Task]]:
    """One computation: traced once on the split, then timed on 1 worker and on ``workers``."""
    call = getattr(_core, name)
    value, threads, recorded = _core._lab_divide(name, x, workers)
    tasks = [Task(*t) for t in recorded]
    one, many = _timed(call, x, workers, repeat, value)
    work = sum(t.end - t.start for t in tasks)
    span = _span(tasks)[0]
    parallelism = work / span if span > 0 else 1.0
    run = DivideRun(
        computation=name,
        workers=workers,
        threads=threads,
        tasks=len(tasks),
        work=work,
        span=span,
        parallelism=parallelism,
        serial=_alone(tasks),
        elapsed=max(t.end for t in tasks) - min(t.start for t in tasks),
        one=one,
        many=many,
        speedup=one / many if many > 0 else math.inf,
        bound=min(threads, parallelism),
    )
    return value, run, tasks


def divide_and_conquer(
    n: int = 10**7, *, workers: int | None = None, repeat: int = 5
) -> DivideReport:
    """Split one F(n), and its decimal digits, over threads: work, span and speedup.

    Two computations, each a recursion whose independent parts run on
    separate threads:

    - ``fib``: ``parpy.fib(n, workers=workers)``, fast doubling, with the
      two squarings of each doubling step on two threads (on six from six
      workers up: each squaring split in three).
    - ``to_decimal``: ``parpy.to_decimal(F(n), workers=workers)``, the
      number divided by a power of ten (computed once, shared) into two
      halves that convert independently, recursively.

    Each is run once with every task recorded (what it did, on which
    thread, when, and whose results it took), which gives the recursion's
    work (the tasks' times summed), its span (the longest chain of tasks,
    each taking another's result) and the parallelism they allow (work /
    span). Then the call is timed on 1 worker and on ``workers``, in turn,
    ``repeat`` times each (the medians), and every result is checked
    against the traced one: the split F(n) is the one-thread
    ``mpz_fib_ui``'s, its digits ``mpz_get_str``'s.

    Ctrl-C stops it between two tasks of a split, and otherwise at the end
    of the call that runs (on 1 worker a call is one GMP call: about a
    second for F(10**8), five for its digits, on one core).

    Parameters
    ----------
    n : int, default 10**7
        The index, from the smallest n whose F(n) is split (about 3.0
        million: 2**21 bits) to 10**9.
    workers : int, optional
        The threads the calls may use, 2 to 256. By default
        ``parpy.get_num_threads()``, at least 2.
    repeat : int, default 5
        The timed runs of each call on each worker count, 1 to 1000.

    Returns
    -------
    DivideReport
        Each computation's work, span, work/span, threads, tasks, times on
        1 worker and on ``workers``, speedup and its bound.

    Raises
    ------
    TypeError
        If ``n``, ``workers`` or ``repeat`` is not an int.
    ValueError
        If a number is out of range, or F(n) is too small to be split (the
        message names the smallest n that is).
    RuntimeError
        If a call's result differs from the traced one (a bug in parpy, not
        a lesson).
    """
    n = _count("n", n, 0, MAX_N)
    repeat = _count("repeat", repeat, 1, MAX_REPEAT)
    if workers is None:
        workers = max(2, _core.get_num_threads())
    workers = _count("workers", workers, 2, MAX_THREADS)
    if _core._split_threads(_core.fib, n, workers) < 2:
        raise ValueError(
            f"F({n:,}) is computed on one thread: n must be at least "
            f"{_smallest_split(workers):,} for parpy.fib to split it"
        )
    x, fib, fib_tasks = _run("fib", n, workers, repeat)
    _, dec, dec_tasks = _run("to_decimal", x, workers, repeat)
    cpus = os.cpu_count() or 1
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return DivideReport(n, [fib, dec], {"fib": fib_tasks, "to_decimal": dec_tasks}, cpus, available)

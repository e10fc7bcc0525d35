"""The deadlock (:func:`parpy.lab.deadlock`): two threads take two locks in opposite
orders and deadlock; a watchdog finds the cycle and breaks it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from parpy import _core
from parpy._support.render import plural
from parpy.lab._common import (
    MAX_COUNT,
    _choice,
    _count,
    _duration,
    _figure,
    _LabReport,
    _seconds,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DEADLOCK_MODES = ("opposite_order", "ordered", "trylock")

LOCKS = ("A", "B")  # the deadlock lab's locks, by index


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

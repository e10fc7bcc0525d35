"""Shared state against messages (:func:`parpy.lab.shared_vs_messages`): one reduction
on a mutex-protected total, and by messages to the one thread that owns the total."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from parpy import _core
from parpy._support.render import palette, plural
from parpy.lab._common import MAX_THREADS, _count, _duration, _figure, _LabReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ("shared", "messages")
MAX_ITEMS = 2**32  # shared_vs_messages: the sum of 1..items fits in 64 bits


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

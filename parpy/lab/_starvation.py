"""Starvation (:func:`parpy.lab.starvation`): workers compete for one lock, unfair or
fair, measured by Jain's fairness index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from parpy import _core
from parpy._support.render import plural
from parpy.lab._common import (
    MAX_THREADS,
    _choice,
    _count,
    _duration,
    _figure,
    _LabReport,
    _seconds,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

POLICIES = ("unfair", "fair")


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

"""The interleaved timing of parpy.compare (:func:`measure`), the CPU that other
processes use meanwhile (:class:`OtherCpu`), and the sweep of worker counts."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import NamedTuple, TypeVar

__all__ = [
    "WORKERS_PER_CPU",
    "OtherCpu",
    "default_workers",
    "max_workers",
    "measure",
    "worker_counts",
]

K = TypeVar("K", bound=Hashable)


def measure(
    calls: Mapping[K, Callable[[], object]],
    rounds: int,
    number: int = 1,
    *,
    after: Callable[[K], object] | None = None,
    others: dict[K, list[float]] | None = None,
) -> dict[K, list[float]]:
    """Time each call ``rounds`` times; return the seconds per call of each run.

    The runs are interleaved, one of each call per round, and the order
    rotates from round to round, so that drift and noise on the machine fall
    on every call alike. Timed with ``time.perf_counter``.

    Parameters
    ----------
    calls : mapping of key to callable
        The calls to time, each taking no argument.
    rounds : int
        Runs of each call.
    number : int, default 1
        Calls a run times (for calls too quick to time one at a time).
    after : callable, optional
        Called as ``after(key)`` after each run, outside the timing.
    others : dict, optional
        Filled, if given, with the cores that other processes kept busy
        during each run of each key, on average (:class:`OtherCpu`, read
        between the runs, outside the timing); left empty where there is no
        /proc/stat (not Linux).

    Returns
    -------
    dict
        For each key, the seconds per call of each of its runs.
    """
    keys = list(calls)
    times: dict[K, list[float]] = {key: [] for key in keys}
    note = None if others is None else _others_since(others)
    for r in range(rounds):
        k = r % len(keys) if keys else 0
        for key in keys[k:] + keys[:k]:
            func = calls[key]
            start = time.perf_counter()
            for _ in range(number):
                func()
            times[key].append((time.perf_counter() - start) / number)
            if note is not None:
                note(key)
            if after is not None:
                after(key)
    return times


# ---- the CPU that other processes use ------------------------------------------

# The fields of /proc/stat's "cpu" line (user nice system idle iowait irq softirq
# steal guest guest_nice) that are busy time: all but idle and iowait (guest time
# is counted in user already).
_BUSY_FIELDS = (1, 2, 3, 6, 7, 8)


class _Process(NamedTuple):
    """A process's line of /proc/<pid>/stat, in clock ticks."""

    ppid: int
    start: int  # since boot: with the pid, it names the process (pids are reused)
    cpu: int  # utime + stime
    reaped: int  # cutime + cstime: the children it has waited for, theirs included


class Reading(NamedTuple):
    """What :meth:`OtherCpu.read` read, CPU times in clock ticks."""

    when: float  # time.perf_counter() as /proc/stat was read
    busy: int  # the whole machine's busy CPU time
    own: int  # this process's and its own processes', their reaped children's included


def _machine_busy(stat: str) -> int:
    """The busy ticks of /proc/stat's "cpu" line (the sum over the CPUs)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields))
    raise ValueError("no 'cpu' line in /proc/stat")


def _process(stat: str) -> _Process:
    """The fields of a /proc/<pid>/stat line. The name, in parentheses, may hold
    spaces and parentheses itself: the fields start after the last ')'."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is stat's field 3 (state): ppid is 4, utime 14 ... cstime 17, starttime 22
    return _Process(
        ppid=int(fields[1]),
        start=int(fields[19]),
        cpu=int(fields[11]) + int(fields[12]),
        reaped=int(fields[13]) + int(fields[14]),
    )


def _others_since(others: dict[K, list[float]]) -> Callable[[K], None] | None:
    """A call ``note(key)`` that appends to ``others[key]`` the cores that other
    processes kept busy since its last call (the first: since now); None where
    there is no /proc/stat. Each call reads once: a run ends where the next
    begins."""
    meter = OtherCpu()
    last = meter.read()
    if last is None:
        return None

    def note(key: K) -> None:
        nonlocal last
        now = meter.read()
        if last is not None and now is not None:
            others.setdefault(key, []).append(meter.cores(last, now))
        last = now

    return note


class OtherCpu:
    """How many cores processes other than this one and its own kept busy.

    A process's *own* processes are its descendants: the workers, pools,
    clusters and servers it starts, and any child that its caller started
    before (a Dask LocalCluster, a helper). Each :meth:`read` takes the whole
    machine's busy CPU time from /proc/stat's "cpu" line (user, nice,
    system, irq, softirq and steal: not idle or iowait), and the CPU time of
    this process and its own from /proc/<pid>/stat (utime + stime, found by
    their parent links). Between two readings, what the machine's time grew
    by less what its own grew by is the CPU time of other processes: over
    the seconds between the readings, the cores they kept busy on average
    (:meth:`cores`).

    A child that exits between two readings is gone from /proc, but its
    time is then in its parent's cutime + cstime (the children it waited
    for), which count as its parent's own. A process stays own once seen
    own (one whose parent exited is adopted elsewhere); pids are told apart
    by their start time, since they are reused. The counters tick at
    ``SC_CLK_TCK`` (100 a second): a reading is good to a few ticks, which
    over a run of 0.1 s is a few tenths of a core either way (below zero
    too: the figures are not clipped, so that their mean over several runs
    stays true).

    Parameters
    ----------
    proc : str, default "/proc"
        Where procfs is mounted.
    root : int, optional
        The process whose own are not others; by default this one.
    """

    def __init__(self, proc: str = "/proc", root: int | None = None) -> None:
        self._proc = proc
        self._root = os.getpid() if root is None else root
        self._own: set[tuple[int, int]] = set()  # (pid, start) of each process seen own
        self._tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    def read(self) -> Reading | None:
        """Read the busy CPU time of the machine and of this process and its own.

        Returns
        -------
        Reading or None
            The reading; None where there is no /proc/stat (not Linux).
        """
        try:
            with open(os.path.join(self._proc, "stat")) as f:
                busy = _machine_busy(f.read())
        except OSError:
            return None
        when = time.perf_counter()
        table = self._processes()
        children: dict[int, list[int]] = {}
        for pid, p in table.items():
            children.setdefault(p.ppid, []).append(pid)
        own = {pid for pid, p in table.items() if (pid, p.start) in self._own}
        todo = [self._root] if self._root in table else []
        while todo:
            pid = todo.pop()
            own.add(pid)
            todo += (child for child in children.get(pid, ()) if child not in own)
        self._own |= {(pid, table[pid].start) for pid in own}
        return Reading(when, busy, sum(table[pid].cpu + table[pid].reaped for pid in own))

    def _processes(self) -> dict[int, _Process]:
        table = {}
        for name in os.listdir(self._proc):
            if not name.isdigit():
                continue
            try:
                with open(os.path.join(self._proc, name, "stat")) as f:
                    table[int(name)] = _process(f.read())
            except (OSError, ValueError, IndexError):  # exited since listed, or unreadable
                continue
        return table

    def cores(self, before: Reading, after: Reading) -> float:
        """Return the cores that other processes kept busy between two readings, on average.

        Parameters
        ----------
        before : Reading
            The first reading.
        after : Reading
            A later one.

        Returns
        -------
        float
            Their CPU seconds over the seconds between the readings.
        """
        seconds = after.when - before.when
        if seconds <= 0:
            return 0.0
        other = (after.busy - before.busy) - (after.own - before.own)
        return other / self._tick / seconds


def _count(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}, not {value}")
    return value


# compare() refuses more workers than this per CPU (ValueError, before anything
# starts): enough for I/O-bound work ("crawl" sweeps 16 on 2 CPUs), and no
# million threads or processes from a typo.
WORKERS_PER_CPU = 64


def _cpus() -> int:
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return int(count() or 1)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(cpus: int | None = None) -> list[int]:
    """Return 1, the powers of two below the CPU count, and the CPU count.

    Parameters
    ----------
    cpus : int, optional
        The CPU count; by default the CPUs this process may run on.

    Returns
    -------
    list of int
        The worker counts, sorted.
    """
    cpus = _cpus() if cpus is None else cpus
    counts = [1 << k for k in range(cpus.bit_length()) if 1 << k <= cpus]
    return sorted({*counts, cpus})


def max_workers(cpus: int | None = None) -> int:
    """Return the most workers compare() takes: WORKERS_PER_CPU x the CPU count.

    Parameters
    ----------
    cpus : int, optional
        The CPU count; by default the CPUs this process may run on.

    Returns
    -------
    int
        The largest worker count compare() runs.
    """
    return WORKERS_PER_CPU * (_cpus() if cpus is None else cpus)


def worker_counts(workers: int | Iterable[int] | None) -> list[int]:
    """Return the sweep of worker counts that compare() runs for ``workers``.

    Parameters
    ----------
    workers : int or iterable of int or None
        One count or several; None for :func:`default_workers`.

    Returns
    -------
    list of int
        The counts, each once, sorted.

    Raises
    ------
    TypeError
        If ``workers`` or a count in it is not an int.
    ValueError
        If a count is < 1 or over :func:`max_workers`, or there is none.
    """
    if workers is None:
        return default_workers()
    if isinstance(workers, int) and not isinstance(workers, bool):
        workers = [workers]
    if isinstance(workers, (str, bytes)) or not isinstance(workers, Iterable):
        raise TypeError(
            f"workers must be an int or a sequence of ints, not {type(workers).__name__}"
        )
    counts = sorted({_count(w, "workers", 1) for w in workers})
    if not counts:
        raise ValueError("workers is empty")
    cpus = _cpus()
    if counts[-1] > max_workers(cpus):
        raise ValueError(
            f"workers must be <= {max_workers(cpus)} ({WORKERS_PER_CPU} x the {cpus} CPUs), "
            f"not {counts[-1]}"
        )
    return counts


def _capped(counts: list[int], items: int) -> tuple[list[int], str | None]:
    """The sweep with no count over ``items`` (each worker needs an item), and
    a note of the counts that were capped (None if none was)."""
    over = [w for w in counts if w > items]
    if not over:
        return counts, None
    return sorted({min(w, items) for w in counts}), (
        f"{', '.join(map(str, over))} ran as {items}: no more workers than items"
    )

"""The report of a comparison: times, speedups, fits and verdicts, per backend.

``parpy.compare()`` times one workload on several backends (serial Python,
threading, multiprocessing, parpy's native threads, ...) over a sweep of
worker counts and returns a :class:`Report`. The report holds what was
measured, exactly as given (a :class:`Timing` per backend and worker count,
a :class:`Skip` per backend that could not run the work), and derives:

- **rows** (:class:`Row`), one per Timing, in the order given: the *median*
  of the timed repeats and their spread (min and max), wall-clock seconds;
  the **speedup** ``baseline / median``, where the baseline is the median of
  the ``"serial"`` Timing; the **efficiency** ``speedup / workers``; the
  **Karp-Flatt** serial fraction ``e = (1/S - 1/p) / (1 - 1/p)`` for
  ``p > 1`` workers (see :func:`karp_flatt`), where ``S`` is the speedup
  over the backend's *own* time on one worker when it was timed on one
  worker (so that e measures how the backend scales, not how fast its code
  is: parpy on one native thread is already several times serial Python),
  else over the serial baseline (and none where that speedup exceeds p: the
  backend runs faster code than the baseline, which says nothing of a serial
  fraction); the time to start the backend's pool or
  processes (outside the timed repeats); whether the run used more
  workers than the CPUs; and the cores that **other processes** kept busy
  during its repeats (their mean, weighted by the repeats' times; None where
  not measured), and whether that makes it **busy**: others took more than
  :data:`BUSY_SHARE` (a tenth) of the CPU its workers could have used, that
  is, with ``p = min(workers, cpus)``, others > ``cpus - p + BUSY_SHARE *
  p`` cores, plus the counters' resolution over its time
  (:data:`OTHERS_RESOLUTION` x the square root of the repeats / the
  repeats' total time: a row of short runs is marked only on a clear
  excess). Its workers then had, part of the time, no free core to run on,
  and its figures are not to be trusted.
- an **Amdahl fit** per backend timed at two or more worker counts (see
  :func:`amdahl_fit`): ``T(p) = T1 (f + (1 - f) / p)`` fitted by least
  squares to the backend's median time at each worker count, giving the
  serial fraction f, the fitted one-worker time T1, and the RMS relative
  error of the fit. p is ``min(workers, cpus)``: workers beyond the CPUs
  share them, so the law's time levels off at the CPU count.
- a one-line **verdict** per backend (skipped ones too, with the reason):
  the best speedup (the highest; with more workers than CPUs, said so), the
  serial fraction from the fit (or Karp-Flatt's, without one) and the
  start-up; or "no gain" where the best speedup is below 1.1, with the
  speedup on the most workers within the CPUs, and "the GIL" for the
  backends that run Python on threads. Where ``meta["gil_released"]`` says
  how the work releases the GIL (a C function called through ctypes:
  "by ctypes during each call of f"), their verdict says so, and with no
  gain, that threads gain where a call's work outweighs the Python around
  it, with serial's time per item. A backend with a busy row gets none of
  these conclusions (serial fraction, "no gain from more workers", "the
  GIL"): its verdict gives its figure alone (the best speedup, or "no gain"
  with the speedup on the most workers; serial: its time), how the work
  releases the GIL where the meta says so, and that the machine was busy
  (the most cores others kept busy, on which worker counts): not to be
  trusted.

It renders as an aligned table (``str()``), an HTML table (``_repr_html_``,
which Jupyter shows), a pandas DataFrame (:meth:`Report.to_pandas`) and a
two-panel matplotlib figure (:meth:`Report.plot`), and round-trips exactly
through JSON (:meth:`Report.to_json`, :meth:`Report.from_json`). pandas and
matplotlib are optional: only those two methods import them.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from parpy._support.render import Table, palette, plural

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

__all__ = ["Fit", "Report", "Row", "Skip", "Timing", "amdahl_fit", "karp_flatt"]

# A best speedup below this is "no gain".
GAIN_THRESHOLD = 1.1

# A row is busy when other processes took more than this share of the CPU its workers
# could have used: with c CPUs and p = min(workers, c) cores for the workers, others
# kept busy more than (c - p) + BUSY_SHARE * p cores (plus the resolution below). Its
# workers then lacked a core part of the time, and its time may be that much too long.
# A quiet machine's daemons stay far below (on 2 CPUs, 0.2 core for 2 workers).
BUSY_SHARE = 0.1

# CPU seconds per repeat: how far the figure of other processes' CPU can be off in
# one repeat. /proc counts CPU time in ticks of 10 ms, and the figure is the
# difference of a few counters (the machine's, each process's), each off by up to a
# tick; over n repeats of t seconds in all, others' cores are known to within about
# OTHERS_RESOLUTION * sqrt(n) / t, which a row's excess must pass before it is busy.
OTHERS_RESOLUTION = 0.05

# The JSON layout; from_json refuses other versions.
_JSON_VERSION = 1

# Backends that run Python code on threads of one interpreter: the GIL lets one
# of them run Python at a time. A variant ("threading[chunksize=4]") counts too.
_GIL_BACKENDS = frozenset({"threading", "thread-pool"})

# The meta key that says how the work those backends run releases the GIL,
# e.g. "by ctypes during each call of f": their threads then run the calls at
# once, and hold the GIL only between them.
GIL_RELEASED = "gil_released"


# ---- what was measured -------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """The timed repeats of one backend on one worker count.

    Parameters
    ----------
    backend : str
        The backend's name, not empty.
    workers : int
        The workers it ran on, >= 1 (1 for serial).
    times : tuple of float
        Wall-clock seconds of each timed repeat, each finite and > 0.
    startup : float, default 0.0
        Seconds to start its pool or processes, outside ``times``.
    others : tuple of float, optional
        The cores that other processes kept busy during each repeat, on
        average (see :class:`parpy.comparison._measure.OtherCpu`): finite,
        one per time, possibly a little below 0 (the counters' resolution);
        None where not measured.

    Raises
    ------
    ValueError
        If a value is out of range, ``times`` is empty, or ``others`` is not
        one finite value per time.
    TypeError
        If ``workers`` is not an int.
    """

    backend: str
    workers: int  # 1 for serial
    times: tuple[float, ...]  # wall-clock seconds of each timed repeat
    startup: float = 0.0  # seconds to start its pool or processes, outside ``times``
    others: tuple[float, ...] | None = None  # cores other processes kept busy in each repeat

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend must be a non-empty str, not {self.backend!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int):
            raise TypeError(f"workers must be an int, not {type(self.workers).__name__}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, not {self.workers}")
        times = tuple(float(t) for t in self.times)
        if not times:
            raise ValueError(f"{self.backend}: times is empty")
        if not all(math.isfinite(t) and t > 0 for t in times):
            raise ValueError(f"{self.backend}: times must be finite and > 0, not {times}")
        startup = float(self.startup)
        if not (math.isfinite(startup) and startup >= 0):
            raise ValueError(f"{self.backend}: startup must be finite and >= 0, not {startup}")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "startup", startup)
        if self.others is not None:
            others = tuple(float(c) for c in self.others)
            if len(others) != len(times) or not all(math.isfinite(c) for c in others):
                raise ValueError(
                    f"{self.backend}: others must be one finite value per time, not {others}"
                )
            object.__setattr__(self, "others", others)


@dataclass(frozen=True)
class Skip:
    """A backend that could not run the work, and why.

    Parameters
    ----------
    backend : str
        The backend's name.
    reason : str
        Why it could not run the work.
    """

    backend: str
    reason: str  # e.g. "the function does not pickle (a lambda): multiprocessing cannot run it"


# ---- what is derived ---------------------------------------------------------


class Row(NamedTuple):
    """The figures of one Timing; times in seconds.

    Parameters
    ----------
    backend : str
        The backend's name.
    workers : int
        The workers it ran on.
    median : float
        The median of the repeats.
    low : float
        The fastest repeat.
    high : float
        The slowest repeat.
    speedup : float
        The baseline's median / this median.
    efficiency : float
        ``speedup / workers``.
    karp_flatt : float or None
        The experimental serial fraction; None at one worker.
    startup : float
        Seconds to start the backend's pool or processes.
    over_cpus : bool
        More workers than CPUs.
    others : float or None, default None
        The cores other processes kept busy during the repeats (the mean
        weighted by their times, at least 0); None where not measured.
    busy : bool, default False
        Others took more than :data:`BUSY_SHARE` of the CPU the workers could
        have used: the figures are not to be trusted.
    """

    backend: str
    workers: int
    median: float  # seconds, the median of the repeats
    low: float  # seconds, the fastest repeat
    high: float  # seconds, the slowest repeat
    speedup: float  # baseline / median
    efficiency: float  # speedup / workers
    karp_flatt: float | None  # the experimental serial fraction; None at one worker
    startup: float  # seconds
    over_cpus: bool  # workers > cpus
    others: float | None = None  # cores other processes kept busy; None: not measured
    busy: bool = False  # others took CPU the workers could have used


class Fit(NamedTuple):
    """Amdahl's law ``T(p) = t1 * (serial_fraction + (1 - serial_fraction) / p)``, fitted.

    Parameters
    ----------
    serial_fraction : float
        f, 0 to 1.
    t1 : float
        Seconds on one worker, fitted.
    residual : float
        The RMS relative error of the fit over the points.
    """

    serial_fraction: float
    t1: float  # seconds on one worker, fitted
    residual: float  # RMS relative error of the fit over the points

    def time(self, workers: float) -> float:
        """Return the fitted time on ``workers`` workers.

        Parameters
        ----------
        workers : float
            The processors p, > 0.

        Returns
        -------
        float
            Seconds.
        """
        return self.t1 * (self.serial_fraction + (1 - self.serial_fraction) / workers)


def karp_flatt(speedup: float, workers: int) -> float | None:
    """Return the Karp-Flatt metric: the serial fraction that a speedup on ``workers`` implies.

    ``e = (1/speedup - 1/p) / (1 - 1/p)``. On a machine that follows Amdahl's
    law with serial fraction f, e == f at every p; an e that grows with p
    means overhead that grows with the workers (start-up, communication, the
    GIL).

    Parameters
    ----------
    speedup : float
        The speedup on ``workers``, > 0.
    workers : int
        The processors p, >= 1.

    Returns
    -------
    float or None
        e; None at one worker, where it is undefined.

    Raises
    ------
    ValueError
        If ``workers`` < 1 or ``speedup`` <= 0.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if not speedup > 0:
        raise ValueError(f"speedup must be > 0, not {speedup}")
    if workers == 1:
        return None
    return (1 / speedup - 1 / workers) / (1 - 1 / workers)


def amdahl_fit(workers: Sequence[int], times: Sequence[float]) -> Fit:
    """Fit Amdahl's law ``T(p) = T1 (f + (1 - f) / p)`` to times on worker counts.

    ``T(p) = a + b/p`` is linear in ``(1, 1/p)``: a and b are the least
    squares solution, constrained to ``a >= 0`` and ``b >= 0``: where the
    unconstrained solution leaves one negative, the better (in squared
    error) of the best fit with ``a = 0`` (perfectly parallel, f = 0) and
    the best with ``b = 0`` (no gain from workers, f = 1). Then
    ``T1 = a + b`` and ``f = a / (a + b)``.
    ``residual`` is the RMS of ``(fit - time) / time`` over the points.

    Parameters
    ----------
    workers : sequence of int
        The worker counts p, each >= 1, two or more distinct.
    times : sequence of float
        The time at each, finite and > 0.

    Returns
    -------
    Fit
        f, T1 and the residual.

    Raises
    ------
    ValueError
        If the lengths differ, there are fewer than two distinct worker
        counts, or a value is out of range.
    """
    if len(workers) != len(times):
        raise ValueError(f"{len(workers)} worker counts but {len(times)} times")
    if any(p < 1 for p in workers):
        raise ValueError(f"worker counts must be >= 1, not {list(workers)}")
    if len(set(workers)) < 2:
        raise ValueError(f"need two or more distinct worker counts, not {sorted(set(workers))}")
    if not all(math.isfinite(t) and t > 0 for t in times):
        raise ValueError(f"times must be finite and > 0, not {list(times)}")
    xs = [1 / p for p in workers]
    ts = [float(t) for t in times]
    n = len(xs)
    mean_x, mean_t = sum(xs) / n, sum(ts) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxt = sum((x - mean_x) * (t - mean_t) for x, t in zip(xs, ts, strict=True))
    b = sxt / sxx
    a = mean_t - b * mean_x
    if a < 0 or b < 0:

        def sse(a: float, b: float) -> float:
            return sum((a + b * x - t) ** 2 for x, t in zip(xs, ts, strict=True))

        through_origin = (
            0.0,
            sum(x * t for x, t in zip(xs, ts, strict=True)) / sum(x * x for x in xs),
        )
        flat = (mean_t, 0.0)
        a, b = min(through_origin, flat, key=lambda ab: sse(*ab))
    t1 = a + b
    residual = math.sqrt(sum(((a + b * x - t) / t) ** 2 for x, t in zip(xs, ts, strict=True)) / n)
    return Fit(serial_fraction=a / t1, t1=t1, residual=residual)


# ---- formatting helpers ------------------------------------------------------


def _seconds(s: float) -> str:
    """Seconds to three significant figures, in s, ms or µs."""
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 0.1:
        return f"{s:#.3g} s"
    if s >= 1e-4:
        return f"{s * 1e3:#.3g} ms"
    return f"{s * 1e6:#.3g} µs"


def _ratio(x: float) -> str:
    """A speedup or efficiency: two decimals, or two significant figures below 0.1."""
    return f"{x:.2f}" if x >= 0.095 else f"{x:#.2g}"


class _Column(NamedTuple):
    """How a column of seconds is shown: in ``unit``, with ``decimals``."""

    unit: str
    scale: float
    decimals: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> _Column:
        """A unit that suits the largest of ``seconds``, and the decimals (2 to 4) that
        show the smallest (zeros aside) to three significant figures where they can."""
        largest = max(seconds, default=1.0)
        smallest = min((s for s in seconds if s > 0), default=largest)
        unit, scale = (
            ("s", 1.0) if largest >= 0.05 else ("ms", 1e3) if largest >= 5e-5 else ("µs", 1e6)
        )
        if smallest <= 0:  # all zeros
            return cls("s", 1.0, 2)
        decimals = min(max(2 - math.floor(math.log10(smallest * scale)), 2), 4)
        return cls(unit, scale, decimals)

    def __call__(self, seconds: float) -> str:
        return f"{seconds * self.scale:.{self.decimals}f}"


def _row_json(row: Row) -> dict[str, Any]:
    """A row as to_json writes it: without others and busy where not measured, as before
    they were."""
    data = row._asdict()
    if row.others is None:
        del data["others"], data["busy"]
    return data


def _others(row: Row) -> str:
    """A row's cell of others' cores: to a tenth, ! if busy, - if not measured."""
    if row.others is None:
        return "-"
    return f"{row.others:.1f}!" if row.busy else f"{row.others:.1f}"


def _workers(p: int) -> str:
    return plural(p, "worker")


def _to_start(backend: str) -> str:
    """What a backend's start-up time is spent on, as the verdict says it."""
    if "process" in backend:
        return "to start its processes"
    if "pool" in backend:
        return "to start its pool"
    if "thread" in backend:
        return "to start its threads"
    return "to start up"


# ---- the report --------------------------------------------------------------


class Report:
    """The times of one workload on several backends, and what they show.

    :func:`parpy.compare` returns one. ``rows`` holds a :class:`Row` per
    Timing, ``verdicts`` a line per backend, ``baseline`` serial's median.
    Rows taken while other processes kept the CPUs busy are marked (``busy``;
    "!" in the table's "others" column, shown when there is one; the
    verdicts say so): their figures are not to be trusted.

    Parameters
    ----------
    work : str
        Describes the workload.
    items : int
        How many items one run processes.
    timings : sequence of Timing
        What was timed; must include one for the ``"serial"`` backend, the
        baseline of every speedup.
    skipped : sequence of Skip, default ()
        The backends that could not run the work.
    cpus : int
        The CPUs the process could run on, >= 1.
    repeat : int
        The timed runs of each backend.
    warmup : int
        The untimed runs of each backend.
    meta : mapping, optional
        Anything else worth keeping (Python, parpy and GMP versions, the
        machine), kept as JSON values (a tuple becomes a list) so that it
        survives :meth:`to_json`.

    Raises
    ------
    TypeError
        If a timing is not a Timing or a skip not a Skip, or ``meta`` does
        not convert to JSON.
    ValueError
        If ``cpus`` < 1, there is no "serial" Timing, or ``meta`` holds a
        NaN or an infinity.
    """

    rows: tuple[Row, ...]
    baseline: float
    verdicts: dict[str, str]

    def __init__(
        self,
        *,
        work: str,
        items: int,
        timings: Sequence[Timing],
        skipped: Sequence[Skip] = (),
        cpus: int,
        repeat: int,
        warmup: int,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.work = work
        self.items = items
        self.timings = tuple(timings)
        self.skipped = tuple(skipped)
        self.cpus = cpus
        self.repeat = repeat
        self.warmup = warmup
        self.meta: dict[str, Any] = json.loads(json.dumps(dict(meta or {}), allow_nan=False))
        for t in self.timings:
            if not isinstance(t, Timing):
                raise TypeError(f"timings must be Timing objects, not {type(t).__name__}")
        for s in self.skipped:
            if not isinstance(s, Skip):
                raise TypeError(f"skipped must be Skip objects, not {type(s).__name__}")
        if cpus < 1:
            raise ValueError(f"cpus must be >= 1, not {cpus}")

        serial = [t for t in self.timings if t.backend == "serial"]
        if not serial:
            raise ValueError("a report needs a 'serial' Timing: the baseline of every speedup")
        self.baseline = statistics.median(serial[0].times)

        # The backends in the order they first appear, and each one's median
        # time per worker count (over all its Timings at that count).
        self._backends = list(dict.fromkeys(t.backend for t in self.timings))
        self._medians: dict[str, dict[int, float]] = {}
        for name in self._backends:
            pooled: dict[int, list[float]] = {}
            for t in self.timings:
                if t.backend == name:
                    pooled.setdefault(t.workers, []).extend(t.times)
            self._medians[name] = {p: statistics.median(ts) for p, ts in sorted(pooled.items())}

        self.rows = tuple(self._row(t) for t in self.timings)
        # Amdahl's p is processors: more workers than CPUs run on the CPUs.
        self._fits = {
            name: amdahl_fit([min(p, cpus) for p in medians], list(medians.values()))
            for name, medians in self._medians.items()
            if len({min(p, cpus) for p in medians}) >= 2
        }
        self.verdicts = self._verdicts()

    def _row(self, t: Timing) -> Row:
        median = statistics.median(t.times)
        speedup = self.baseline / median
        own_one = self._medians[t.backend].get(1)
        scaling = (own_one if own_one is not None else self.baseline) / median
        # Over the serial baseline, more than p times faster on p workers is
        # faster code (parpy's kernels on a Dask cluster), not a serial fraction.
        fraction = (
            None if own_one is None and scaling > t.workers else karp_flatt(scaling, t.workers)
        )
        others, busy = None, False
        if t.others is not None:
            total = sum(t.times)
            others = max(sum(c * s for c, s in zip(t.others, t.times, strict=True)) / total, 0.0)
            cores = min(t.workers, self.cpus)  # what the workers could use
            resolution = OTHERS_RESOLUTION * math.sqrt(len(t.times)) / total
            busy = others - (self.cpus - cores) > BUSY_SHARE * cores + resolution
        return Row(
            backend=t.backend,
            workers=t.workers,
            median=median,
            low=min(t.times),
            high=max(t.times),
            speedup=speedup,
            efficiency=speedup / t.workers,
            karp_flatt=fraction,
            startup=t.startup,
            over_cpus=t.workers > self.cpus,
            others=others,
            busy=busy,
        )

    def amdahl(self, backend: str) -> Fit | None:
        """Return the Amdahl fit of ``backend``'s median times.

        The fit takes ``min(workers, cpus)`` as the processors p: workers
        beyond the CPUs share them, and the fitted time levels off there.

        Parameters
        ----------
        backend : str
            A backend of the report.

        Returns
        -------
        Fit or None
            The fit; None with fewer than two worker counts.

        Raises
        ------
        ValueError
            If the report has no timings of ``backend``.
        """
        if backend not in self._medians:
            known = ", ".join(self._backends)
            raise ValueError(f"no timings of backend {backend!r} (the report has: {known})")
        return self._fits.get(backend)

    # ---- verdicts -------------------------------------------------------------

    def _verdicts(self) -> dict[str, str]:
        verdicts: dict[str, str] = {}
        for name in self._backends:
            verdicts[name] = f"{name}: {self._verdict(name)}"
        for skip in self.skipped:
            line = f"skipped: {skip.reason}"
            if skip.backend in verdicts:  # timed on some worker counts, skipped on others
                verdicts[skip.backend] += f"; {line}"
            else:
                verdicts[skip.backend] = f"{skip.backend}: {line}"
        return verdicts

    def _verdict(self, name: str) -> str:
        rows = [r for r in self.rows if r.backend == name]
        # Busy rows: the figure only, with what is known apart from it (how the work
        # releases the GIL), no conclusion drawn from it, and the load.
        busy = [r for r in rows if r.busy]
        if name == "serial":
            baseline = f"the baseline, {_seconds(self.baseline)}"
            return self._busy(baseline, busy) if busy else baseline
        gil = name.partition("[")[0] in _GIL_BACKENDS
        released = self.meta.get(GIL_RELEASED) if gil else None
        # The highest speedup; on a tie, the fewest workers.
        best = max(rows, key=lambda r: (r.speedup, -r.workers))
        if best.speedup < GAIN_THRESHOLD:
            # The figure that shows it: the most workers the CPUs can run at once.
            within = [r for r in rows if not r.over_cpus] or rows
            most = max(within, key=lambda r: (r.workers, -r.median))
            verdict = f"no gain ({_ratio(most.speedup)}x on {self._on(most)})"
            if busy:
                return self._busy(verdict, busy, released)
            if released is not None:  # not blindly the GIL: say when threads can gain
                return (
                    f"{verdict}; the GIL is released {released} only, so threads gain where "
                    "a call's work outweighs the Python around it "
                    f"({_seconds(self.baseline / self.items)} per item on serial)"
                )
            return verdict + (": the GIL" if gil else "")
        parts = [f"{_ratio(best.speedup)}x on {self._on(best)}"]
        if busy:
            return self._busy(parts[0], busy, released)
        fit = self._fits.get(name)
        if fit is not None:
            parts.append(f"serial fraction {fit.serial_fraction:.2f}")
        elif best.karp_flatt is not None:
            parts.append(f"serial fraction {best.karp_flatt:.2f}")
        if best.workers == 1 and len(self._medians[name]) > 1:
            parts.append("no gain from more workers")
        if best.startup >= 1e-3:
            parts.append(f"{_seconds(best.startup)} {_to_start(name)}")
        if released is not None:
            parts.append(f"the GIL released {released}")
        return ", ".join(parts)

    def _busy(self, figure: str, busy: list[Row], released: str | None = None) -> str:
        """The verdict of a backend with busy rows: its figure, how the work releases
        the GIL (if said), and how busy the machine was."""
        most = max(r.others or 0.0 for r in busy)
        counts = [str(r.workers) for r in busy]
        on = counts[0] if len(counts) == 1 else f"{', '.join(counts[:-1])} and {counts[-1]}"
        parts = [figure]
        if released is not None:
            parts.append(f"the GIL is released {released}")
        parts.append(
            f"the machine was busy (other processes kept {most:.1f} of the "
            f"{plural(self.cpus, 'CPU')} busy during its runs on {on} "
            f"worker{'' if counts == ['1'] else 's'}): not to be trusted"
        )
        return "; ".join(parts)

    def _on(self, row: Row) -> str:
        on = _workers(row.workers)
        return f"{on} (more than the {plural(self.cpus, 'CPU')})" if row.over_cpus else on

    # ---- renderings -----------------------------------------------------------

    def _table(self) -> Table:
        """The table: headings (a top and a bottom line each), cells, caption and notes."""
        time = _Column.of([t for r in self.rows for t in (r.low, r.high)])
        startup = _Column.of([r.startup for r in self.rows])
        headings = [
            ("", "backend"),
            ("", "workers"),
            ("median", time.unit),
            ("spread", f"min-max {time.unit}"),
            ("", "speedup"),
            ("", "efficiency"),
            ("serial fraction", "Karp-Flatt"),
            ("startup", startup.unit),
        ]
        busy = any(r.busy for r in self.rows)  # the others' column only then
        if busy:
            headings.append(("others", "cores"))
        cells: list[tuple[str, ...]] = [
            (
                r.backend,
                f"{r.workers}*" if r.over_cpus else str(r.workers),
                time(r.median),
                f"{time(r.low)}-{time(r.high)}",
                f"{_ratio(r.speedup)}x",
                _ratio(r.efficiency),
                "-" if r.karp_flatt is None else f"{r.karp_flatt:.3f}",
                startup(r.startup) if r.startup else "-",
                *([_others(r)] if busy else []),
            )
            for r in self.rows
        ]
        return Table("report", headings, cells, self._caption(), self._notes())

    def _caption(self) -> str:
        return (
            f"{self.work}: {plural(self.items, 'item')}; median of {plural(self.repeat, 'run')} "
            f"after {self.warmup} warm-up; {plural(self.cpus, 'CPU')}; speedup over serial "
            f"({_seconds(self.baseline)})"
        )

    def _fit_lines(self, aligned: bool = True) -> list[str]:
        width = max((len(name) for name in self._fits), default=0) if aligned else 0
        busy = {r.backend for r in self.rows if r.busy}
        return [
            f"{name:<{width}}  f = {fit.serial_fraction:.3f}, T1 = {_seconds(fit.t1)}, "
            f"residual {fit.residual:.1%}" + (" !" if name in busy else "")
            for name, fit in self._fits.items()
        ]

    def _notes(self) -> list[str]:
        notes = []
        if any(r.over_cpus for r in self.rows):
            notes.append(f"* more workers than the {plural(self.cpus, 'CPU')}")
        if any(r.busy for r in self.rows):
            notes.append(
                f"! busy: other processes took over {BUSY_SHARE:.0%} of the CPU the workers "
                "could have used: not to be trusted"
            )
        if self.meta:
            notes.append(", ".join(f"{k}: {v}" for k, v in self.meta.items()))
        return notes

    def __str__(self) -> str:
        lines = [self._table().text()]
        fits = self._fit_lines()
        if fits:
            lines += ["", "Amdahl fit, T(p) = T1 (f + (1 - f)/p):", *("  " + f for f in fits)]
        lines += ["", *self.verdicts.values()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        backends = ", ".join(self._backends)
        skipped = f"; skipped {', '.join(s.backend for s in self.skipped)}" if self.skipped else ""
        return f"<parpy Report: {self.work}; {backends}{skipped}>"

    def _repr_html_(self) -> str:
        esc = html.escape
        more = []
        fits = self._fit_lines(aligned=False)
        if fits:
            more.append("<p>Amdahl fit, T(p) = T1 (f + (1 - f)/p):</p>")
            more.append("<ul>" + "".join(f"<li>{esc(f)}</li>" for f in fits) + "</ul>")
        verdicts = "".join(f"<li>{esc(v)}</li>" for v in self.verdicts.values())
        more.append(f'<ul class="verdicts">{verdicts}</ul>')
        return self._table().html(*more)

    # ---- JSON -----------------------------------------------------------------

    def to_json(self) -> str:
        """Return the report as JSON: what was given, then the derived figures.

        The derived figures are for readers: :meth:`from_json` reads back
        what was given and derives the rest again.

        Returns
        -------
        str
            The JSON text, indented.
        """
        data = {
            "version": _JSON_VERSION,
            "work": self.work,
            "items": self.items,
            "cpus": self.cpus,
            "repeat": self.repeat,
            "warmup": self.warmup,
            "meta": self.meta,
            "timings": [
                {
                    "backend": t.backend,
                    "workers": t.workers,
                    "times": t.times,
                    "startup": t.startup,
                    **({} if t.others is None else {"others": t.others}),
                }
                for t in self.timings
            ],
            "skipped": [{"backend": s.backend, "reason": s.reason} for s in self.skipped],
            "baseline": self.baseline,
            "rows": [_row_json(r) for r in self.rows],
            "amdahl": {name: fit._asdict() for name, fit in self._fits.items()},
            "verdicts": self.verdicts,
        }
        return json.dumps(data, indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Report:
        """Return the report that :meth:`to_json` wrote.

        Parameters
        ----------
        text : str
            The JSON text.

        Returns
        -------
        Report
            The report, equal to the one written.

        Raises
        ------
        ValueError
            If ``text`` is not JSON, or not a parpy report of this version.
        KeyError
            If a field is missing.
        """
        data = json.loads(text)
        if data.get("version") != _JSON_VERSION:
            raise ValueError(
                f"not a parpy report of version {_JSON_VERSION}: {data.get('version')!r}"
            )
        return cls(
            work=data["work"],
            items=data["items"],
            timings=[Timing(**t) for t in data["timings"]],
            skipped=[Skip(**s) for s in data["skipped"]],
            cpus=data["cpus"],
            repeat=data["repeat"],
            warmup=data["warmup"],
            meta=data["meta"],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Report):
            return NotImplemented
        return self._given() == other._given()

    __hash__ = None  # type: ignore[assignment]  # mutable meta

    def _given(self) -> tuple[object, ...]:
        return (
            self.work,
            self.items,
            self.timings,
            self.skipped,
            self.cpus,
            self.repeat,
            self.warmup,
            self.meta,
        )

    # ---- pandas and matplotlib --------------------------------------------------

    def to_pandas(self) -> pandas.DataFrame:
        """Return the rows as a pandas DataFrame.

        Returns
        -------
        pandas.DataFrame
            One row per :class:`Row`, its columns Row's fields; ``attrs``
            holds work, items, cpus and baseline.

        Raises
        ------
        ImportError
            If pandas is not installed.
        """
        try:
            import pandas
        except ImportError:
            raise ImportError("Report.to_pandas() needs pandas: pip install pandas") from None
        frame = pandas.DataFrame([r._asdict() for r in self.rows], columns=list(Row._fields))
        frame.attrs.update(work=self.work, items=self.items, cpus=self.cpus, baseline=self.baseline)
        return frame

    def plot(self) -> Figure:
        """Return a figure of two panels: time, and speedup over serial, against workers.

        Per backend: the median time with its spread (min to max), the
        speedup, and the Amdahl fit (dashed); the ideal speedup ``p``, serial
        as a horizontal reference, and the CPU count as a vertical line;
        points with more workers than CPUs are circled, and those taken
        while the machine was busy crossed. Both panels are
        log-log, so the ideal speedup is a diagonal. Built on
        ``matplotlib.figure.Figure`` (no pyplot state):
        ``report.plot().savefig("compare.png")`` works without a display.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.lines import Line2D
            from matplotlib.ticker import FuncFormatter, NullLocator
        except ImportError:
            raise ImportError(
                "Report.plot() needs matplotlib: pip install matplotlib "
                "(or pip install 'parpy[notebook]')"
            ) from None

        fig = Figure(figsize=(12, 4.8), layout="constrained")
        ax_time, ax_speed = fig.subplots(1, 2)
        counts = sorted({p for medians in self._medians.values() for p in medians} | {self.cpus})
        top = counts[-1]
        # Fit curves are drawn on a geometric grid that includes the CPU count (their knee).
        grid = sorted({top ** (i / 64) for i in range(65)} | set(counts))

        serial = dict(color="black", linestyle=":", linewidth=1.2)
        ax_time.axhline(self.baseline, label="serial (baseline)", **serial)
        ax_speed.axhline(1.0, **serial)
        ax_speed.plot(grid, grid, color="gray", linewidth=1, label="ideal (speedup = p)")
        for ax in (ax_time, ax_speed):
            ax.axvline(
                self.cpus,
                color="gray",
                linestyle="-.",
                linewidth=1,
                label=plural(self.cpus, "CPU"),
            )

        timed = [name for name in self._backends if name != "serial"]
        for name, color in zip(timed, palette(len(timed)), strict=True):
            rows = sorted((r for r in self.rows if r.backend == name), key=lambda r: r.workers)
            ps = [r.workers for r in rows]
            ax_time.errorbar(
                ps,
                [r.median for r in rows],
                yerr=[[r.median - r.low for r in rows], [r.high - r.median for r in rows]],
                marker="o",
                capsize=3,
                color=color,
                label=name,
            )
            ax_speed.plot(ps, [r.speedup for r in rows], marker="o", color=color, label=name)
            fit = self._fits.get(name)
            if fit is not None:
                fitted = [fit.time(min(p, self.cpus)) for p in grid]
                ax_time.plot(grid, fitted, "--", color=color, linewidth=1)
                ax_speed.plot(
                    grid, [self.baseline / t for t in fitted], "--", color=color, linewidth=1
                )
            over = [r for r in rows if r.over_cpus]
            ax_time.scatter([r.workers for r in over], [r.median for r in over], **_RING)
            ax_speed.scatter([r.workers for r in over], [r.speedup for r in over], **_RING)
            busy = [r for r in rows if r.busy]
            ax_time.scatter([r.workers for r in busy], [r.median for r in busy], **_CROSS)
            ax_speed.scatter([r.workers for r in busy], [r.speedup for r in busy], **_CROSS)

        ax_time.set(title="Time", ylabel="median time (s), bars: min to max")
        ax_speed.set(title="Speedup over serial", ylabel="speedup (serial time / time)")
        for ax in (ax_time, ax_speed):
            ax.set(xscale="log", yscale="log", xlabel="workers")
            ax.set_xticks(counts, [str(p) for p in counts])
            ax.xaxis.set_minor_locator(NullLocator())
            _plain_log_labels(ax.yaxis, ax.get_ylim(), FuncFormatter)
            ax.grid(True, which="both", alpha=0.25)

        # One legend for both panels: the backends, then the reference lines.
        labelled: dict[str, Any] = {}
        for ax in (ax_time, ax_speed):
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labelled.setdefault(label, handle)
        if self._fits:
            labelled["Amdahl fit"] = Line2D([], [], color="gray", linestyle="--", linewidth=1)
        if any(r.over_cpus for r in self.rows):
            labelled["more workers than CPUs"] = Line2D(
                [],
                [],
                marker="o",
                markersize=11,
                linestyle="",
                markerfacecolor="none",
                markeredgecolor=_RING["edgecolors"],
            )
        if any(r.busy for r in self.rows):
            labelled["machine busy: not to be trusted"] = Line2D(
                [], [], marker="x", markersize=9, linestyle="", color=_CROSS["c"]
            )
        order = [*timed, *(label for label in labelled if label not in timed)]
        # Beside the speedup panel, where constrained layout makes room for it.
        ax_speed.legend(
            [labelled[k] for k in order],
            order,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            fontsize="small",
        )

        title = (
            f"{self.work}\n{plural(self.items, 'item')}, median of {plural(self.repeat, 'run')}, "
            f"{plural(self.cpus, 'CPU')}"
        )
        if self.skipped:
            title += "; skipped: " + ", ".join(s.backend for s in self.skipped)
        fig.suptitle(title)
        return fig


# How plot() circles the points with more workers than CPUs.
_RING: dict[str, Any] = dict(
    s=170, facecolors="none", edgecolors="crimson", linewidths=1.5, zorder=3
)


# How plot() crosses out the points taken while the machine was busy.
_CROSS: dict[str, Any] = dict(s=90, marker="x", c="black", linewidths=1.5, zorder=4)


def _plain_log_labels(axis: Any, limits: tuple[float, float], formatter: Any) -> None:
    """Label a log axis with plain numbers (0.5, 2, 10), and 2 and 5 in between when it is short."""
    low, high = limits
    short = high / low <= 100

    def minor(value: float, _pos: object) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        return f"{value:g}" if short and mantissa in (2, 5) else ""

    axis.set_major_formatter(formatter(lambda value, _pos: f"{value:g}"))
    axis.set_minor_formatter(formatter(minor))

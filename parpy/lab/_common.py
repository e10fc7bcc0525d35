"""What the lab's experiments share: the checks of their arguments (``TypeError`` or
``ValueError`` before any thread starts), the bounds on them, the formatting of durations and
the base of their reports (a table and notes, text and HTML, through ``_support.render``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from parpy._support.render import Table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_THREADS = 256  # csrc/lab/lab.c's LAB_MAX_THREADS
MAX_COUNT = 2**40  # increments and rounds: hours of work, far from any overflow
MAX_SECONDS = 10**6  # seconds and timeout: finite, and bounded


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


def _duration(s: float) -> str:
    """Seconds in s, ms or µs, to three significant figures."""
    unit, scale = ("s", 1.0) if s >= 1 else ("ms", 1e3) if s >= 1e-3 else ("µs", 1e6)
    value = s * scale
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:#.3g} {unit}"


def _times(x: float) -> str:
    """A ratio as ``1.62x`` (``-`` when it is not finite)."""
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

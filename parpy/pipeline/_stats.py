"""A pipeline's statistics: per stage, items, busy and blocked time and
utilisation, and the bottleneck; a table in text and in HTML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from parpy._support.render import Table
from parpy.pipeline._stages import RawStage, RawStats, Stage


class StageStats(NamedTuple):
    """The figures of one stage of a pipeline run; times in seconds, summed over its workers.

    Parameters
    ----------
    number : int
        Its place in the pipeline, from 0.
    name : str
        The stage's name.
    workers : int
        Its workers.
    items_in : int
        Items it took.
    items_out : int
        Items it passed on.
    busy : float
        Time in the stage's function.
    blocked_in : float
        Time waiting on an empty input.
    blocked_out : float
        Time waiting for room after it.
    utilisation : float
        ``busy / (usable workers * wall)``, 0 to 1.
    """

    number: int  # its place in the pipeline, from 0
    name: str
    workers: int
    items_in: int
    items_out: int
    busy: float
    blocked_in: float
    blocked_out: float
    # busy / (usable workers * wall), 0..1: a stage given fewer items than it
    # has workers can keep only that many busy
    utilisation: float


def _utilisation(row: RawStage, workers: int, wall: float) -> float:
    usable = min(workers, max(row.items_in, 1))
    return min(1.0, row.busy / (usable * wall)) if wall > 0 else 0.0


class PipelineStats:
    """A pipeline's figures, per stage, from :meth:`Pipeline.stats`.

    ``stats.stages`` (StageStats), ``stats.bottleneck`` (the busiest stage's
    name, by utilisation), ``stats.wall`` (seconds), ``stats.running``.
    Prints as a table and renders as HTML in Jupyter.

    Parameters
    ----------
    backend : str
        The pipeline's backend.
    stages : sequence of Stage
        The pipeline's stages.
    raw : RawStats or None
        What the backend counted; None before the first run.
    """

    __slots__ = ("backend", "input_blocked", "items", "running", "stages", "wall")

    def __init__(self, backend: str, stages: Sequence[Stage], raw: RawStats | None) -> None:
        self.backend = backend
        self.wall = raw.wall if raw else 0.0
        self.running = raw.running if raw else False
        self.input_blocked = raw.input_blocked if raw else 0.0
        rows = raw.stages if raw else tuple(RawStage(0, 0, 0.0, 0.0, 0.0) for _ in stages)
        self.stages = tuple(
            StageStats(
                i,
                stage.name,
                stage.workers,
                *row,
                _utilisation(row, stage.workers, self.wall),
            )
            for i, (stage, row) in enumerate(zip(stages, rows, strict=True))
        )
        self.items = self.stages[-1].items_out

    @property
    def bottleneck(self) -> str | None:
        """The name of the stage with the highest utilisation; None before any item."""
        best = self._bottleneck()
        return None if best is None else best.name

    def _bottleneck(self) -> StageStats | None:
        if not self.items and not any(s.items_in for s in self.stages):
            return None
        return max(self.stages, key=lambda s: s.utilisation)

    def as_dict(self) -> dict[str, Any]:
        """Return the figures as JSON values.

        Returns
        -------
        dict
            backend, wall, running, items, input_blocked, bottleneck, and a
            dict of each stage's figures.
        """
        return {
            "backend": self.backend,
            "wall": self.wall,
            "running": self.running,
            "items": self.items,
            "input_blocked": self.input_blocked,
            "bottleneck": self.bottleneck,
            "stages": [s._asdict() for s in self.stages],
        }

    _HEAD = ("stage", "workers", "in", "out", "busy s", "wait in s", "wait out s", "busy %")

    def _rows(self) -> list[tuple[str, ...]]:
        best = self._bottleneck()
        return [
            (
                f"{s.number} {s.name}" + (" *" if s is best else ""),
                str(s.workers),
                str(s.items_in),
                str(s.items_out),
                f"{s.busy:.3f}",
                f"{s.blocked_in:.3f}",
                f"{s.blocked_out:.3f}",
                f"{100 * s.utilisation:.0f}",
            )
            for s in self.stages
        ]

    def _summary(self) -> str:
        state = "running" if self.running else "finished"
        text = f"{self.backend} pipeline, {state}: {self.items} items out in {self.wall:.3f} s"
        if self.input_blocked:
            text += f"; the input waited {self.input_blocked:.3f} s for room"
        best = self._bottleneck()
        if best is not None:
            text += f"; bottleneck: {best.name} ({100 * best.utilisation:.0f}% busy)"
        return text

    def _table(self) -> Table:
        return Table("pipeline", self._HEAD, self._rows(), notes=[self._summary()])

    def __str__(self) -> str:
        return self._table().text()

    def _repr_html_(self) -> str:
        return self._table().html()

    def __repr__(self) -> str:
        return f"<PipelineStats {self._summary()}>"

"""How the threading and processes backends hand out results and take room:
the consumer's reorder buffer and tokens, the feeder's wait for a token, the
queue sizes, and how a run's outcome is raised."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from parpy.pipeline._stages import POLL, Stage, input_note, stage_note


def room(stage: Stage, maxsize: int) -> int:
    """The capacity of the queue in front of a stage: a few items per worker,
    never more than the in-flight bound."""
    return min(maxsize, max(16, 4 * stage.workers))


def closed_error() -> RuntimeError:
    return RuntimeError("the Pipeline was closed during this run")


class Handout:
    """The consumer's side of a run: results in input order (a reorder buffer
    of position -> result) or as they come; a token goes back to the feeder
    once the consumer comes back for the result after each."""

    def __init__(self, run: Any, tokens: threading.Semaphore, ordered: bool) -> None:
        self.run = run  # .done, .error, .closed
        self.tokens = tokens
        self.ordered = ordered
        self.waiting: dict[int, Any] = {}
        self.expected = 0  # the position handed out next, when ordered

    def add(self, position: int, value: Any) -> Iterator[Any]:
        """Yields what can leave now that the result at position came."""
        run, tokens = self.run, self.tokens
        if not self.ordered:
            run.done += 1
            yield value
            del value
            tokens.release()
            return
        waiting = self.waiting
        waiting[position] = value
        del value
        while self.expected in waiting:
            value = waiting.pop(self.expected)
            self.expected += 1
            run.done += 1
            yield value
            del value
            tokens.release()
            if run.error is not None or run.closed:
                return


def take_token(run: Any) -> bool:
    """The feeder's wait for room (run.tokens), counted in run.input_blocked;
    False once the run is stopping (run.stop)."""
    began = time.monotonic()
    while not run.tokens.acquire(timeout=POLL):
        if run.stop.is_set():
            break
    run.input_blocked += time.monotonic() - began
    return not run.stop.is_set()


def raise_outcome(run: Any, stages: tuple[Stage, ...]) -> None:
    """After a run's workers are at rest: raises its error, noted with the
    stage and the item's position (the runner keeps no frames of it), or
    RuntimeError if the pipeline was closed during the run."""
    if run.error is not None:
        exc, stage, position = run.error
        run.error = None
        if stage is None:
            input_note(exc, position)
        else:
            stage_note(exc, stage, stages[stage].name, position)
        try:
            raise exc
        finally:
            del exc
    if run.closed:
        raise closed_error()

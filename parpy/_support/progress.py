"""Progress bars for map-style calls (``progress=True``), on tqdm.

Native workers count finished items in a ``_core.Control`` without the GIL;
a small thread reads that counter a few times a second and moves the bar.
``tqdm.auto`` picks the notebook bar in Jupyter and the text bar elsewhere.

parpy's bars are of one tqdm class with a write lock of its own, made anew
in a forked child: tqdm's global lock may be held, at the fork, by a thread
the child does not have.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from parpy import _core
from parpy._support import fork as _fork

_POLL_SECONDS = 0.1


def require(progress: object) -> bool:
    """Return whether a bar is wanted; raise ImportError now if tqdm is missing."""
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, not {type(progress).__name__}")
    if progress:
        tqdm_class()
    return progress


# parpy's bar class for each tqdm class (tqdm.auto's: the text or the notebook bar)
_bars: dict[type, Any] = {}


def tqdm_class() -> Any:
    """parpy's tqdm class; ImportError if tqdm cannot be imported."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install tqdm (or pip install 'parpy[progress]')"
        ) from None
    bar = _bars.get(tqdm)
    if bar is None:

        class Bar(tqdm):  # type: ignore[misc,valid-type,unused-ignore]
            # parpy moves its bars itself: no tqdm monitor thread (a daemon
            # thread that would outlive the call).
            monitor_interval = 0

        Bar.set_lock(threading.RLock())
        bar = _bars.setdefault(tqdm, Bar)
    return bar


def _after_fork_in_child() -> None:
    for bar in _bars.values():
        bar.set_lock(threading.RLock())


os.register_at_fork(after_in_child=_after_fork_in_child)


def total_of(iterable: object) -> int | None:
    """The number of items, when the input knows it without being consumed."""
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def total_of_all(iterables: tuple[object, ...]) -> int | None:
    """The number of tuples zip(*iterables) gives, when every input knows its length."""
    totals = [total_of(iterable) for iterable in iterables]
    if not totals or None in totals:
        return None
    return min(t for t in totals if t is not None)


def bar(total: int | None, desc: str) -> Any:
    """A tqdm bar of items that the caller moves (``update(n)``, ``close()``)."""
    return tqdm_class()(total=total, desc=desc, unit="item", dynamic_ncols=True)


class Progress:
    """A bar that follows ``control.done`` until :meth:`close`."""

    def __init__(self, control: _core.Control, total: int | None, desc: str) -> None:
        self._control = control
        self._bar = bar(total, desc)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, name="parpy-progress", daemon=True)
        self._thread.start()
        _fork.register(self)

    def _disown(self) -> None:
        """In a forked child, alone: the bar is the parent's; close() does nothing."""
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._closed.set()

    def _poll(self) -> None:
        while not self._closed.wait(_POLL_SECONDS):
            self._update()

    def _update(self) -> None:
        with self._lock:
            done = self._control.done
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Show the final count and close the bar; safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._update()
        self._bar.close()


def start(progress: bool, control: _core.Control, total: int | None, desc: str) -> Progress | None:
    return Progress(control, total, desc) if progress else None


def wanted(progress: bool | None) -> bool:
    """Whether to show bars: ``progress`` as :func:`require` takes it, or for
    None, whether the user watches (a terminal on stderr, or Jupyter) and tqdm
    is installed."""
    if progress is None:
        interactive = "ipykernel" in sys.modules or (sys.stderr is not None and sys.stderr.isatty())
        if not interactive:
            return False
        try:
            tqdm_class()
        except ImportError:
            return False
        return True
    return require(progress)

"""How parpy starts worker processes: the start method, and a forked child's
own fork server.

Every process backend (the pipeline's, compare's, the crawler's shared gate,
the served test site) uses :data:`START_METHOD`: "forkserver" where the
platform has it, else "spawn". parpy runs native threads, and a process
forked from a threaded one may inherit locks that those threads held.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
from typing import Any

__all__ = ["START_METHOD"]

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _after_fork_in_child() -> None:
    """A forked child starts worker processes of its own (here, and wherever
    parpy uses START_METHOD). multiprocessing does not re-initialise its fork
    server and resource tracker for os.fork: the fork server is the parent's
    child, not ours, and one of the parent's threads may hold either's lock.
    The child gets a fork server of its own, started on first use (with the
    same preloaded modules), and a new lock for the resource tracker, whose
    process it shares with the parent as multiprocessing's forked children do."""
    server: Any = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    preload = server._preload_modules
    server.__init__()
    server._preload_modules = preload
    tracker: Any = multiprocessing.resource_tracker._resource_tracker  # type: ignore[attr-defined]
    tracker._lock = type(tracker._lock)()


os.register_at_fork(after_in_child=_after_fork_in_child)

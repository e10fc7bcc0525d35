"""The concurrency lab: race conditions, deadlock, starvation, shared state
versus message passing, happening on native threads and measured.

With the GIL, Python threads hide most of the problems of parallel programs;
on parpy's native threads they really happen. Each function here makes one
happen, safely (bounded in time and memory by its arguments, interrupted by
Ctrl-C within a fraction of a second, every thread joined before it returns),
and returns a report that prints as a table, renders as HTML in Jupyter,
draws itself with :meth:`plot` (matplotlib) and gives its figures with
:meth:`as_dict`:

- :func:`race`: threads increment one shared counter; unsynchronized, updates
  are lost (``report.lost``); a mutex or an atomic fetch-add fixes it, at a
  cost.
- :func:`deadlock`: two threads take two locks in opposite orders and deadlock
  for real; a watchdog finds the cycle, says who holds what and waits for
  what, and breaks it. One lock order, or trylock and back off, never
  deadlock.
- :func:`starvation`: workers compete for one lock; an unfair lock lets the
  thread that just released it take it back, a fair one serves them in turn
  (``report.jain``, Jain's fairness index).
- :func:`shared_vs_messages`: one reduction done on a mutex-protected total
  and by messages to the one thread that owns the total.
- :func:`divide_and_conquer`: one huge F(n), and its decimal digits, split
  recursively over threads; the recursion's work and span (its longest chain
  of dependent tasks) bound the speedup measured.

The native work is in ``csrc/lab/lab.c`` (``csrc/lab/divide.c`` for the
divide and conquer, which traces the kernels' own split). Each experiment is a
module of its own, which validates the arguments (``TypeError`` or
``ValueError`` before any thread starts), runs it, and derives the figures:
``_race``, ``_deadlock``, ``_starvation``, ``_messages`` and ``_divide``; what
they share (the checks, the formatting, the reports' base) is in ``_common``.
"""

from __future__ import annotations

from parpy.lab._common import MAX_THREADS
from parpy.lab._deadlock import DEADLOCK_MODES, DeadlockReport, deadlock
from parpy.lab._deadlock import DeadlockThread as DeadlockThread
from parpy.lab._divide import DivideReport, divide_and_conquer
from parpy.lab._messages import MessagesReport, shared_vs_messages
from parpy.lab._messages import ReduceRun as ReduceRun
from parpy.lab._race import RACE_MODES, RaceReport, race
from parpy.lab._race import RaceRun as RaceRun
from parpy.lab._starvation import POLICIES, StarvationReport, jain_index, starvation

# Not in __all__ but here by name (the `as` re-exports above): the reports' parts, which
# pickles of the reports made before the experiments had modules of their own name as
# parpy.lab.RaceRun, parpy.lab.DeadlockThread and parpy.lab.ReduceRun.
__all__ = [
    "DEADLOCK_MODES",
    "MAX_THREADS",
    "POLICIES",
    "RACE_MODES",
    "DeadlockReport",
    "DivideReport",
    "MessagesReport",
    "RaceReport",
    "StarvationReport",
    "deadlock",
    "divide_and_conquer",
    "jain_index",
    "race",
    "shared_vs_messages",
    "starvation",
]

"""A forked child disowns the parent's workers.

A child forked at any moment (``os.fork``, multiprocessing's "fork" start
method) has one thread, the one that forked; the threads of the parent's
pools, executors, pipelines and progress bars are gone, and any lock one of
them held stays held. The objects that own such threads or locks register
here; in the child, before anything else runs, each one's ``_disown()`` is
called, alone: it forgets the parent's workers, takes new locks, and from
then on refuses the work it can no longer do (new objects made in the child
work as usual). At exit the child waits for none of the parent's workers.

The native side does the same for what it owns (csrc/runtime/ring.c): a queue made
before the fork is never locked in the child.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["register"]


class Owner(Protocol):
    def _disown(self) -> None: ...


_owners: weakref.WeakSet[Owner] = weakref.WeakSet()


def register(owner: Owner) -> None:
    """Has ``owner._disown()`` called in a child forked from now on."""
    _owners.add(owner)


def _after_fork_in_child() -> None:
    owners = list(_owners)
    _owners.clear()
    for owner in owners:
        owner._disown()


os.register_at_fork(after_in_child=_after_fork_in_child)

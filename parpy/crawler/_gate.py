"""What the fetch workers of one crawl share, in whichever process they run:
each host's slots, each host's robots.txt, the URLs taken on. A cancel wakes
every wait on it."""

from __future__ import annotations

import threading
from multiprocessing.managers import BaseManager


class _Cancelled(Exception):
    """The crawl was cancelled (Ctrl-C) while this fetch waited."""


class _Gate:
    """What every fetch worker of one crawl shares, in whichever process it runs.

    - slots: at most ``per_host`` requests to one host at once;
    - robots.txt: each host's text, fetched once by the first worker that
      needs it while the others wait for it;
    - claims: the URLs the crawl has taken on (each level's, and each
      redirect's target), so that a redirect never fetches a URL twice.

    On the multiprocessing backend the worker processes reach the one
    instance through a manager (:class:`_GateManager`); else it is shared
    directly. :meth:`cancel` wakes every wait (it raises :class:`_Cancelled`).
    """

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        # Reentrant: cancel() runs in a signal handler, maybe while the main
        # thread is inside claim_all().
        self._cond = threading.Condition(threading.RLock())
        self._busy: dict[str, int] = {}
        self._robots: dict[str, list[str]] = {}
        self._robots_pending: set[str] = set()
        self._claimed: set[str] = set()
        self._cancelled = False

    def _wait(self) -> None:
        if self._cancelled:
            raise _Cancelled
        self._cond.wait()
        if self._cancelled:
            raise _Cancelled

    def acquire(self, host: str) -> None:
        with self._cond:
            while self._busy.get(host, 0) >= self._per_host:
                self._wait()
            if self._cancelled:
                raise _Cancelled
            self._busy[host] = self._busy.get(host, 0) + 1

    def release(self, host: str) -> None:
        with self._cond:
            self._busy[host] -= 1
            self._cond.notify_all()

    def robots(self, host: str) -> list[str] | None:
        """The host's robots.txt lines; None: the caller fetches them, then
        calls :meth:`set_robots` (or :meth:`set_robots` with None to give up)."""
        with self._cond:
            while host in self._robots_pending:
                self._wait()
            lines = self._robots.get(host)
            if lines is None:
                self._robots_pending.add(host)
            return lines

    def set_robots(self, host: str, lines: list[str] | None) -> None:
        with self._cond:
            self._robots_pending.discard(host)
            if lines is not None:
                self._robots[host] = lines
            self._cond.notify_all()

    def claim(self, url: str) -> bool:
        """Takes url on; False if the crawl already had."""
        with self._cond:
            if url in self._claimed:
                return False
            self._claimed.add(url)
            return True

    def claim_all(self, urls: list[str]) -> None:
        with self._cond:
            self._claimed.update(urls)

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()


class _GateManager(BaseManager):
    """Serves one :class:`_Gate` to a multiprocessing crawl's worker processes."""


_GateManager.register("Gate", _Gate)

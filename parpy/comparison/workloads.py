"""The built-in workloads of :func:`parpy.compare`, by name in :data:`WORKLOADS`
("iterative", "doubling", "recursive", "tiny", "skewed", "pipeline", "crawl"):
what ``parpy.compare("tiny")`` and ``python -m parpy compare tiny`` run, and
:func:`make_ns`, the reproducible batches of n they draw."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urljoin

from parpy import _core
from parpy._core import Kernel
from parpy.crawler.site import Site, fetch, page_path
from parpy.pipeline import Stage

__all__ = [
    "CRAWL_DELAY",
    "CRAWL_PAGES",
    "CRAWL_WORKERS",
    "TINY_CHUNKSIZES",
    "WORKLOADS",
    "Variant",
    "Workload",
    "make_ns",
]


# ---- inputs ------------------------------------------------------------------


def make_ns(
    count: int, n_min: int, n_max: int, distribution: str = "uniform", seed: int = 0
) -> list[int]:
    """Return ``count`` values of n in ``[n_min, n_max]``, reproducibly from ``seed``.

    Parameters
    ----------
    count : int
        How many values.
    n_min : int
        The least value, >= 0.
    n_max : int
        The greatest value, >= ``n_min``.
    distribution : {"uniform", "loguniform"}, default "uniform"
        ``"uniform"`` draws n uniformly; ``"loguniform"`` draws log(n)
        uniformly, a batch whose item costs differ by orders of magnitude.
    seed : int, default 0
        The seed of the draw.

    Returns
    -------
    list of int
        The values, in the order drawn.

    Raises
    ------
    ValueError
        If not ``0 <= n_min <= n_max``, ``n_min`` is 0 for "loguniform", or
        the distribution is unknown.
    """
    if not 0 <= n_min <= n_max:
        raise ValueError(f"need 0 <= n_min <= n_max, not n_min={n_min}, n_max={n_max}")
    rng = random.Random(seed)
    if distribution == "uniform":
        return [rng.randint(n_min, n_max) for _ in range(count)]
    if distribution == "loguniform":
        if n_min < 1:
            raise ValueError("a loguniform distribution needs n_min >= 1")
        lo, hi = math.log(n_min), math.log(n_max)
        return [min(max(round(math.exp(rng.uniform(lo, hi))), n_min), n_max) for _ in range(count)]
    raise ValueError(f"distribution must be 'uniform' or 'loguniform', not {distribution!r}")


# ---- the built-in workloads --------------------------------------------------


class Variant(NamedTuple):
    """A backend run with options, reported as a backend of its own.

    Parameters
    ----------
    name : str
        Its name in the report, e.g. "parpy[chunksize=16]".
    backend : str
        The backend it runs on, e.g. "parpy".
    options : tuple of (str, object) pairs
        The options it passes, e.g. ``(("chunksize", 16),)``.
    """

    name: str  # e.g. "parpy[chunksize=16]"
    backend: str  # e.g. "parpy"
    options: tuple[tuple[str, Any], ...]  # e.g. (("chunksize", 16),)


def _variants(backend: str, option: str, values: Iterable[Any]) -> tuple[Variant, ...]:
    return tuple(Variant(f"{backend}[{option}={v}]", backend, ((option, v),)) for v in values)


@dataclass(frozen=True)
class Workload:
    """A built-in workload: ``count`` values of n put through ``work``.

    The values are drawn by :func:`make_ns`; a pipeline's stages are fed the
    decimal text of each n. A workload with a ``site`` runs against a
    website instead: its items are the paths of ``count`` pages
    ("/p/0.html", ...), and :func:`parpy.compare` serves them for the run
    (:meth:`serve`): ``site(pages)`` starts a :class:`parpy.crawler.Site`,
    the items become its URLs, and each kernel stage is bound to its root
    URL.

    Parameters
    ----------
    work : Kernel or tuple of Stage
        A kernel, or a pipeline's stages.
    count : int
        The items of a run.
    n_min : int
        The least n, as in :func:`make_ns`.
    n_max : int
        The greatest n.
    about : str
        What it shows.
    distribution : {"uniform", "loguniform"}, default "uniform"
        How the n are drawn.
    variants : tuple of Variant, default ()
        Runs with options, beside the plain backends.
    seed : int, default 0
        The seed of the draw.
    site : callable, optional
        Serves the items: called with a page count, returns a started
        :class:`parpy.crawler.Site` of that many pages.
    workers : tuple of int, optional
        The sweep of worker counts compare() runs when it is given none; by
        default :func:`parpy.comparison.default_workers`.
    """

    work: Kernel | tuple[Stage, ...]
    count: int
    n_min: int
    n_max: int
    about: str  # what it shows
    distribution: str = "uniform"
    variants: tuple[Variant, ...] = ()  # runs with options, beside the plain backends
    seed: int = 0
    site: Callable[[int], Site] | None = None  # serves the items: a Site of that many pages
    workers: tuple[int, ...] | None = None  # the default sweep, if not default_workers()

    def __str__(self) -> str:
        if isinstance(self.work, Kernel):
            what = self.work.__name__
        else:
            what = " -> ".join(stage.name for stage in self.work)
        if self.site is not None:
            return f"{what} over {self.count} pages of a site on 127.0.0.1"
        spread = ", log-uniform" if self.distribution == "loguniform" else ""
        return f"{what} over {self.count} n{spread} in [{self.n_min}, {self.n_max}]"

    def items(self, count: int | None = None) -> list[Any]:
        """Return the workload's input.

        Parameters
        ----------
        count : int, optional
            How many items; by default the workload's own ``count``.

        Returns
        -------
        list
            The values of n; for a pipeline, their decimal text; for a
            workload with a site, the paths of that many pages.

        Raises
        ------
        ValueError
            As :func:`make_ns`.
        """
        count = self.count if count is None else count
        if self.site is not None:
            return [page_path(i) for i in range(count)]
        ns = make_ns(count, self.n_min, self.n_max, self.distribution, self.seed)
        return ns if isinstance(self.work, Kernel) else [str(n) for n in ns]

    def serve(self, items: list[Any], stack: ExitStack) -> tuple[object, list[Any]]:
        """Return the work and the items that run.

        For a workload with a site: a site of ``len(items)`` pages started
        now, the items (paths) as its URLs and the kernel stages bound to its
        root URL. For any other: ``work`` and ``items`` as they are.

        Parameters
        ----------
        items : list
            The items, from :meth:`items`.
        stack : contextlib.ExitStack
            Closes the site when it closes.

        Returns
        -------
        tuple
            ``(work, items)``, as :func:`parpy.compare` takes them.

        Raises
        ------
        RuntimeError
            If the site's server does not start.
        """
        if self.site is None or isinstance(self.work, Kernel):
            return self.work, items
        site = stack.enter_context(self.site(len(items)))
        stages = tuple(
            Stage(s.func.bind(site.url), s.workers, s.name) if isinstance(s.func, Kernel) else s
            for s in self.work
        )
        return stages, [urljoin(site.url, path) for path in items]


TINY_CHUNKSIZES = (1, 10, 100, 1000)
CRAWL_PAGES = 50
CRAWL_DELAY = 0.01
CRAWL_WORKERS = (1, 4, 16)

# Sized so that serial Python takes about 0.3 s: `python -m parpy compare`
# (iterative, every backend, workers 1 and 2) then takes about 15 s on 2 cores.
# "crawl" is I/O: CRAWL_PAGES pages that answer after CRAWL_DELAY seconds,
# fetched (urllib, in Python) then parsed for links (the kernel, bound to the
# site's root: the site's absolute-path links resolve as on the page), swept
# over more workers than CPUs; serial takes about 0.65 s, and the whole
# `python -m parpy compare crawl` about 45 s on 2 cores (43 s measured).
WORKLOADS: dict[str, Workload] = {
    "iterative": Workload(_core.fib_iterative, 120, 2_000, 25_000, "the book's loop"),
    "doubling": Workload(_core.fib, 100, 100_000, 200_000, "fast doubling, big numbers"),
    "recursive": Workload(_core.fib_recursive, 40, 20, 27, "naive recursion: pure CPU"),
    "tiny": Workload(
        _core.fib,
        10_000,
        0,
        93,
        "granularity: items of a microsecond, in chunks of each size",
        variants=_variants("multiprocessing", "chunksize", TINY_CHUNKSIZES)
        + _variants("parpy", "chunksize", TINY_CHUNKSIZES),
    ),
    "skewed": Workload(
        _core.fib,
        1_200,
        10,
        200_000,
        "load balance: item costs over orders of magnitude, each schedule",
        distribution="loguniform",
        variants=_variants("multiprocessing", "chunksize", (1,))
        + _variants("parpy", "schedule", ("static", "dynamic", "guided")),
    ),
    "pipeline": Workload(
        (Stage(int), Stage(_core.fib), Stage(_core.to_decimal), Stage(len)),
        400,
        10_000,
        50_000,
        "Python stages around native ones; the input is the text of each n",
    ),
    "crawl": Workload(
        (Stage(fetch, name="fetch"), Stage(_core.extract_links, name="extract")),
        CRAWL_PAGES,
        0,
        0,
        f"I/O: {CRAWL_DELAY * 1000:g} ms a page, fetched in Python, links extracted natively; "
        "every backend on 1, 4 and 16 workers in about 45 s on 2 cores",
        site=functools.partial(Site, delay=CRAWL_DELAY),
        workers=CRAWL_WORKERS,
    ),
}

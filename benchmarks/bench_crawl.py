"""parpy.crawl against a generated site on 127.0.0.1: many workers against
one, against the reference crawler, and where the time goes on a large site.

    python -m pytest benchmarks/bench_crawl.py --benchmark-only

The sites (parpy.crawler.Site, served by a child process, so that their
request handling takes no GIL of this one) start at the first call that
needs them and stay up for the whole run (closed at exit). Every crawl is
checked: every page and the index, no errors (AssertionError otherwise).

- ``crawl_candidates()`` (also used by benchmarks/ratios.py), a crawl of
  depth 1 from the index of 200 pages of 64 KiB (about the median HTML
  page on the web) with 30 links each, that answer after 20 ms: "parpy-16",
  ``parpy.crawl`` with workers=16, per_host=16 (goals: >= 8x "parpy-1",
  the same with workers=1, per_host=1; not slower than "reference-16",
  ``parpy.reference.crawl`` with 16 threads).
- The large site, 2000 pages of 64 KiB with 30 links each and no delay,
  crawled to depth 2 by 16 workers: every level's bottleneck is the fetch,
  never the native link extraction (bench_large_site_is_fetch_bound).
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable

import pytest

import parpy
import parpy.reference
from parpy import CrawlResult
from parpy.crawler import Site

PAGES, DELAY, SIZE, LINKS = 200, 0.02, 64 * 1024, 30
LARGE = {"pages": 2000, "delay": 0.0, "size": 64 * 1024, "links": 30}


@functools.cache
def site(pages: int = PAGES, delay: float = DELAY, size: int = SIZE, links: int = LINKS) -> Site:
    """The site, started at the first call, closed at exit."""
    started = Site(pages=pages, delay=delay, size=size, links=links)
    atexit.register(started.close)
    return started


def crawled_all(result: CrawlResult, served: Site) -> CrawlResult:
    """The result, if it holds every page of the site and no error."""
    want = {served.url, *served.urls()}
    errors = result.errors
    if set(result.urls()) != want or errors:
        raise AssertionError(
            f"crawled {len(result)} URLs of the {len(want)} served, {len(errors)} failed: "
            f"{list(errors.items())[:3]}"
        )
    return result


def _parpy(workers: int) -> CrawlResult:
    served = site()
    result = parpy.crawl(
        served.url, depth=1, workers=workers, per_host=workers, respect_robots=True
    )
    return crawled_all(result, served)


def _reference(workers: int) -> CrawlResult:
    served = site()
    return crawled_all(parpy.reference.crawl(served.url, depth=1, workers=workers), served)


def crawl_candidates() -> dict[str, Callable[[], object]]:
    """The crawls of the 200-page site, by name (the site starts at the first call)."""
    return {
        "parpy-16": functools.partial(_parpy, 16),
        "parpy-1": functools.partial(_parpy, 1),
        "reference-16": functools.partial(_reference, 16),
    }


@pytest.mark.parametrize("name", ["parpy-16", "parpy-1", "reference-16"])
def bench_crawl(benchmark, name):
    benchmark.group = f"crawl: {PAGES} pages x {DELAY * 1000:g} ms, depth 1"
    benchmark.pedantic(crawl_candidates()[name], rounds=3, warmup_rounds=1)


def large_site_crawl() -> CrawlResult:
    served = site(**LARGE)
    result = parpy.crawl(served.url, depth=2, workers=16, per_host=16)
    return crawled_all(result, served)


def bench_large_site_is_fetch_bound(benchmark):
    benchmark.group = "crawl: 2000 pages of 64 KiB, 30 links each, no delay, depth 2"
    result = benchmark.pedantic(large_site_crawl, rounds=3, warmup_rounds=1)
    tables = "\n".join(f"depth {depth}:\n{stats}" for depth, stats in enumerate(result.stats))
    print(tables)
    assert result.stats
    assert [s.bottleneck for s in result.stats] == ["fetch"] * len(result.stats), tables

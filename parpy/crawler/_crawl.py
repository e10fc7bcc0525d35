"""parpy.crawl: the classic crawler (fetch, then extract links) as a parpy
pipeline, level by level, breadth first.

Each level of the crawl is one run of
``Pipeline([Stage(fetch, workers), Stage(extract, 2)], ordered=False)``:

- fetch (a Python function; urllib.request releases the GIL while it waits on
  the network) checks robots.txt, takes one of the host's ``per_host`` slots,
  fetches within the page's ``timeout`` (every hop's connect, send and
  receive together: each socket operation gets the time left, see
  :class:`_Socket`), reads at most ``max_bytes``, and follows redirects
  itself, one hop at a time, each hop checked like a link: robots.txt, the
  start hosts, not taken on by the crawl before (so no URL is fetched
  twice), no loop. It returns a :class:`Page` and the body for the next
  stage. What the fetch workers share (the slots, each host's robots.txt,
  the URLs taken on) is one :class:`_Gate`, reached through a manager when
  they are processes;
- extract calls the native kernel ``parpy.extract_links(body, final_url)``,
  which computes without the GIL. It is a small Python stage because the base
  URL differs per page and a one-argument kernel stage can only have it bound
  once for every item (``extract_links.bind(base_url)``);
- the frontier (the calling thread) normalises the links, counts and drops
  the malformed ones, and makes the next level of those not seen and on the
  start hosts (``same_host``), in the order of the pages that hold them.

Every failure of a fetch, whatever it raises, is recorded on its URL's page;
none stops the crawl. Ctrl-C shuts down the sockets of the fetches in flight
(:class:`_Sockets`) before the KeyboardInterrupt, so that the crawl ends at
once, not at its timeouts.

URLs are keyed without their userinfo: a start URL's user and password become
an ``Authorization: Basic`` header for requests to that URL's origin (scheme,
host, port), and go nowhere else (not into a lookup, a Host header, a result);
the userinfo of a link or a redirect's target is dropped.

Nothing in the crawler is module-level state: what a crawl shares lives in its own
:class:`_Gate` and :class:`_Sockets`. A process forked during a crawl reaches
them only through the SIGINT handler it inherited, which acts only in the
process that installed it.

This module drives the levels and makes the frontier; the URLs as the crawl
keys them are in ``_urls``, the gate in ``_gate``, the two stages in
``_fetch``, what a crawl returns in ``result``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from parpy._support import progress as _progress
from parpy._support.processes import START_METHOD
from parpy.crawler._fetch import MAX_BYTES, USER_AGENT, _extract, _Fetcher, _short
from parpy.crawler._gate import _Gate, _GateManager
from parpy.crawler._urls import _basic_auth, _host, _origin, normalize
from parpy.crawler.result import CrawlResult, Page
from parpy.pipeline import BACKENDS, Pipeline, Stage

__all__ = ["crawl"]

PER_HOST = 2
# The longest timeout a crawl takes: a day, in seconds.
MAX_TIMEOUT = 86400.0
# How many extract workers: the kernel is fast next to the network.
EXTRACT_WORKERS = 2


def _number(what: str, value: object, minimum: float, integer: bool) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an int" if integer else "a number"
        raise TypeError(f"{what} must be {want}, not {type(value).__name__}")
    if not value >= minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {value}")
    return value


def _timeout(value: object) -> float:
    """value as a float, once it is a number of seconds in (0, MAX_TIMEOUT]."""
    seconds = _number("timeout", value, 0, False)
    if not 0 < seconds <= MAX_TIMEOUT:
        most = f"{MAX_TIMEOUT:g} (a day)"
        raise ValueError(f"timeout must be > 0 and <= {most}, not {_short(repr(seconds), 40)}")
    return float(seconds)


def _start_urls(urls: str | Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The start URLs normalised, each once, and the Authorization header of
    each origin that one of them gives a user name for."""
    if isinstance(urls, str):
        urls = [urls]
    out: list[str] = []
    auth: dict[str, str] = {}
    for url in urls:
        if not isinstance(url, str):
            raise TypeError(f"urls must be str, not {type(url).__name__}")
        key = normalize(url)
        if key is None:
            raise ValueError(f"only http and https URLs can be crawled, not {url!r}")
        if key not in out:
            out.append(key)
        header = _basic_auth(url)
        if header is not None and auth.setdefault(_origin(key), header) != header:
            raise ValueError(f"two different user names or passwords for {_origin(key)}")
    return out, auth


def crawl(
    urls: str | Iterable[str],
    *,
    depth: int = 0,
    workers: int = 8,
    same_host: bool = True,
    timeout: float = 10.0,
    max_pages: int | None = None,
    max_bytes: int = MAX_BYTES,
    per_host: int = PER_HOST,
    respect_robots: bool = True,
    user_agent: str = USER_AGENT,
    progress: bool = False,
    backend: str = "native",
) -> CrawlResult:
    """Fetch urls and, up to ``depth`` links away, the pages they link to.

    Breadth first, each URL once, as a parpy pipeline (fetch, then extract
    the links natively). A start URL's ``user:password@`` is sent as HTTP
    Basic auth to that URL's scheme, host and port only. Whatever a fetch
    raises is recorded on its page; none stops the crawl.

    Parameters
    ----------
    urls : str or iterable of str
        The start URLs, http or https.
    depth : int, default 0
        How many links away from a start URL to go (0: the start URLs only).
    workers : int, default 8
        Fetches at once.
    same_host : bool, default True
        Crawl only the start URLs' hosts, redirects included.
    timeout : float, default 10.0
        Seconds each page has for all its requests, redirects included; at
        most a day.
    max_pages : int, optional
        The most URLs fetched; by default no limit.
    max_bytes : int, default 8 MiB
        The most bytes read of a page; a longer page is cut and marked.
    per_host : int, default 2
        Fetches at once to one host.
    respect_robots : bool, default True
        Obey each host's robots.txt (fetched once a crawl).
    user_agent : str, default "parpy-crawl/0.1.0 (Python-urllib)"
        The User-Agent header, printable ASCII.
    progress : bool, default False
        Show a progress bar (tqdm) of the pages done.
    backend : {"native", "threading", "multiprocessing"}, default "native"
        The pipeline's backend.

    Returns
    -------
    CrawlResult
        A :class:`Page` for every URL taken on, in the order fetched.

    Raises
    ------
    TypeError
        If an argument has the wrong type (a URL not a str, a count not an
        int, ...).
    ValueError
        If a start URL is not http(s) or is malformed, two start URLs give
        different credentials for one origin, a number is out of range,
        ``backend`` is unknown, or ``user_agent`` is not printable ASCII.
    ImportError
        If ``progress=True`` and tqdm is not installed.
    KeyboardInterrupt
        On Ctrl-C, which stops the crawl at once, the fetches in flight
        included; it carries the pages fetched so far as its ``result``
        attribute.
    """
    starts, auth = _start_urls(urls)
    depth = _number("depth", depth, 0, True)
    workers = _number("workers", workers, 1, True)
    timeout = _timeout(timeout)
    max_bytes = _number("max_bytes", max_bytes, 0, True)
    per_host = _number("per_host", per_host, 1, True)
    if max_pages is not None:
        max_pages = _number("max_pages", max_pages, 0, True)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}")
    if not isinstance(user_agent, str):
        raise TypeError(f"user_agent must be a str, not {type(user_agent).__name__}")
    if not (user_agent.isascii() and user_agent.isprintable()):
        raise ValueError(f"user_agent must be printable ASCII (an HTTP header), not {user_agent!r}")
    show = _progress.require(progress)

    result = CrawlResult()
    began = time.perf_counter()
    try:
        with ExitStack() as stack:
            gate: _Gate = _Gate(per_host)
            if backend == "multiprocessing":
                manager = _GateManager(ctx=multiprocessing.get_context(START_METHOD))
                manager.start()
                stack.callback(manager.shutdown)
                gate = manager.Gate(per_host)  # type: ignore[attr-defined]
            hosts = {_host(u) for u in starts} if same_host else None
            robots = bool(respect_robots)
            fetch = _Fetcher(gate, hosts, timeout, max_bytes, robots, user_agent, auth)
            pipe = Pipeline(
                [
                    Stage(fetch, workers, name="fetch"),
                    Stage(_extract, EXTRACT_WORKERS, name="extract"),
                ],
                ordered=False,
                backend=backend,
            )
            stack.enter_context(pipe)
            bar = None
            if show:
                bar = _progress.tqdm_class()(total=0, desc="crawl", unit="page")
                stack.callback(bar.close)
            stack.enter_context(_cancel_on_ctrl_c(fetch.cancel))
            _levels(pipe, gate, starts, hosts, depth, max_pages, result, bar)
    except KeyboardInterrupt as exc:
        result.interrupted = True
        result.elapsed = time.perf_counter() - began
        exc.result = result  # type: ignore[attr-defined]
        exc.add_note(f"parpy.crawl: interrupted; {len(result)} URLs done (see .result)")
        raise
    result.elapsed = time.perf_counter() - began
    return result


def _levels(
    pipe: Pipeline,
    gate: _Gate,
    level: list[str],
    hosts: set[str] | None,
    depth: int,
    max_pages: int | None,
    result: CrawlResult,
    bar: Any,
) -> None:
    """The crawl, breadth first: each level through the pipeline, then the
    next level made from its links, in the order of the pages that hold
    them (whatever order the fetches ended in)."""
    seen = set(level)
    if max_pages is not None:
        level = level[:max_pages]
    for level_depth in range(depth + 1):
        if not level:
            return
        gate.claim_all(level)
        if bar is not None:
            bar.total += len(level)
            bar.set_postfix_str(f"depth {level_depth}", refresh=False)
            bar.refresh()
        pages: dict[str, Page] = {}
        for page, links in pipe.imap((url, level_depth) for url in level):
            if links is not None:
                page = page._replace(links=tuple(_frontier(links, result)))
            result._add(page)
            pages[page.url] = page
            if page.final_url is not None:
                seen.add(page.final_url)  # a redirect's target: crawled as this URL
            if bar is not None:
                bar.update(1)
        result.stats.append(pipe.stats())
        following = []
        for url in level:
            for link in pages[url].links or ():
                if link not in seen and (hosts is None or _host(link) in hosts):
                    seen.add(link)
                    following.append(link)
        if max_pages is not None:
            following = following[: max(0, max_pages - len(result))]
        level = following


@contextmanager
def _cancel_on_ctrl_c(cancel: Callable[[], object]) -> Iterator[None]:
    """While the crawl runs in the main thread, Ctrl-C first cancels the
    fetches in flight (their sockets are shut down, the waits for a host's
    slot end), then does what it did before (raises KeyboardInterrupt): the
    pipeline's workers then end at once, not at their timeouts.

    A process forked meanwhile inherits the handler but not the crawl: there
    it only does what was done before. (Its sockets are the parent's too,
    and the locks of the gate and of the sockets' registry may have been
    held by the parent's threads at the fork.)"""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    pid = os.getpid()

    def interrupted(signum: int, frame: Any) -> Any:
        if os.getpid() == pid:
            cancel()
        return previous(signum, frame)

    signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _frontier(links: list[str], result: CrawlResult) -> Iterator[str]:
    """The page's links normalised, http(s) only, each once; malformed ones
    are counted on result and left out."""
    kept: set[str] = set()
    for link in links:
        try:
            key = normalize(link)
        except ValueError:
            result.malformed += 1
            continue
        if key is not None and key not in kept:
            kept.add(key)
            yield key

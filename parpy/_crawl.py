"""parpy.crawl: the classic crawler (fetch, then extract links) as a parpy
pipeline, level by level, breadth first.

Each level of the crawl is one run of
``Pipeline([Stage(fetch, workers), Stage(extract, 2)], ordered=False)``:

- fetch (a Python function; urllib.request releases the GIL while it waits on
  the network) checks robots.txt (fetched once per host), takes the host's
  semaphore (``per_host`` requests at once), fetches with a timeout, follows
  redirects (a loop is an error), reads at most ``max_bytes`` and returns a
  :class:`Page` with the body for the next stage;
- extract calls the native kernel ``parpy.extract_links(body, final_url)``,
  which computes without the GIL. It is a small Python stage because the base
  URL differs per page and a one-argument kernel stage can only have it bound
  once for every item (``extract_links.bind(base_url)``);
- the frontier (this thread) normalises the links, drops those seen, those
  off the start hosts (``same_host``) and the malformed ones (counted), and
  makes the next level.

Every failure is recorded on its URL's page; none stops the crawl.
"""

from __future__ import annotations

import html
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from parpy import _core
from parpy._links import scan
from parpy.pipeline import BACKENDS, Pipeline, PipelineStats, Stage

__all__ = ["CrawlResult", "Page", "crawl", "normalize"]

USER_AGENT = "parpy-crawl/0.1.0 (Python-urllib)"
MAX_BYTES = 8 * 1024 * 1024
PER_HOST = 2
MAX_REDIRECTS = 10
HTML_TYPES = ("text/html", "application/xhtml+xml")
DEFAULT_PORTS = {"http": 80, "https": 443}
# How many extract workers: the kernel is fast next to the network.
EXTRACT_WORKERS = 2


class Page(NamedTuple):
    """What the crawl learned about one URL.

    ``status`` is the HTTP status (None when no response came); ``links`` the
    page's links, resolved and normalised, in document order (None when the
    page was not parsed); ``truncated`` that the body was cut at max_bytes;
    ``error`` a "kind: message" string, kind one of robots, dns, refused,
    timeout, http, redirect-loop, connection, or None.
    """

    url: str
    final_url: str | None
    status: int | None
    content_type: str | None
    bytes: int
    elapsed: float
    links: tuple[str, ...] | None
    depth: int
    truncated: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        row = self._asdict()
        row["links"] = None if self.links is None else list(self.links)
        return row


def normalize(url: str) -> str | None:
    """url as the crawl keys it: scheme and host lower-cased, the default port
    and the fragment dropped, an empty path made "/", unsafe characters
    percent-encoded as a browser does. None for a scheme other than http(s);
    ValueError if it is malformed (no host, a bad port, a bad IPv6 literal)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None
    host = parts.hostname
    if not host or any(c <= " " or c in '<>"\\^`{|}\x7f' for c in host):
        raise ValueError(f"no valid host in {url!r}")
    port = parts.port  # ValueError when not a number in range
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    if parts.username is not None:
        userinfo = parts.username + (":" + parts.password if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    return urlunsplit((scheme, netloc, path, query, ""))


def _host(url: str) -> str:
    return urlsplit(url).netloc


class _LoopDetector(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS
    max_repeats = 1  # the same URL twice in one chain is a loop


class _Fetcher:
    """The fetch stage: one URL (with its depth) -> (Page, body or None).

    Holds the per-host robots.txt cache and semaphores; picklable for the
    multiprocessing backend, where each process has caches of its own."""

    def __init__(
        self, timeout: float, max_bytes: int, per_host: int, robots: bool, user_agent: str
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.per_host = per_host
        self.robots = robots
        self.user_agent = user_agent
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._rules: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._rule_locks: dict[str, threading.Lock] = {}
        self._opener = urllib.request.build_opener(_LoopDetector())
        self._opener.addheaders = [("User-Agent", self.user_agent)]

    def __getstate__(self) -> dict[str, Any]:
        keep = ("timeout", "max_bytes", "per_host", "robots", "user_agent")
        return {name: getattr(self, name) for name in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    def _semaphore(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._semaphores.get(host)
            if sem is None:
                sem = self._semaphores[host] = threading.BoundedSemaphore(self.per_host)
            return sem

    def _allowed(self, url: str) -> bool:
        """Whether the host's robots.txt (fetched once per host) lets us fetch url."""
        parts = urlsplit(url)
        host = parts.netloc
        with self._lock:
            rules = self._rules.get(host)
            lock = self._rule_locks.setdefault(host, threading.Lock())
        if rules is None:
            with lock:
                rules = self._rules.get(host)
                if rules is None:
                    rules = self._fetch_rules(f"{parts.scheme}://{host}/robots.txt")
                    with self._lock:
                        self._rules[host] = rules
        return rules.can_fetch(self.user_agent, url)

    def _fetch_rules(self, robots_url: str) -> urllib.robotparser.RobotFileParser:
        # RobotFileParser.read() would use urlopen without our timeout and agent.
        rules = urllib.robotparser.RobotFileParser(robots_url)
        try:
            with self._semaphore(_host(robots_url)):
                with self._opener.open(robots_url, timeout=self.timeout) as response:
                    text = response.read(self.max_bytes).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            # As RobotFileParser.read: 401/403 forbid everything, other errors nothing.
            rules.parse(["User-agent: *", "Disallow: /"] if exc.code in (401, 403) else [])
            exc.close()
        except (OSError, ValueError):
            rules.parse([])  # allow all
        else:
            rules.parse(text.splitlines())
        return rules

    def __call__(self, item: tuple[str, int]) -> tuple[Page, bytes | None]:
        url, depth = item
        start = time.perf_counter()

        def failed(error: str, status: int | None = None, final: str | None = None) -> Page:
            return Page(url, final, status, None, 0, time.perf_counter() - start, None, depth,
                        error=error)  # fmt: skip

        if self.robots and not self._allowed(url):
            return failed("robots: disallowed by robots.txt"), None
        try:
            with self._semaphore(_host(url)):
                with self._opener.open(url, timeout=self.timeout) as response:
                    body = response.read(self.max_bytes + 1)
                    final, status = response.geturl(), response.status
                    content_type = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            exc.close()
            if "redirect" in str(exc.msg) and "infinite loop" in str(exc.msg):
                return failed(f"redirect-loop: {exc.msg}", exc.code, exc.url), None
            return failed(f"http: {exc.code} {exc.reason}", exc.code, exc.url), None
        except urllib.error.URLError as exc:
            return failed(_kind(exc.reason)), None
        except (OSError, ValueError) as exc:  # http.client errors, timeouts while reading
            return failed(_kind(exc)), None
        truncated = len(body) > self.max_bytes
        body = body[: self.max_bytes]
        page = Page(url, final, status, content_type, len(body), time.perf_counter() - start,
                    None, depth, truncated)  # fmt: skip
        return page, body if content_type in HTML_TYPES else None


def _kind(reason: object) -> str:
    """The "kind: message" of a failure without an HTTP response."""
    if isinstance(reason, socket.gaierror):
        kind = "dns"
    elif isinstance(reason, ConnectionRefusedError):
        kind = "refused"
    elif isinstance(reason, TimeoutError):  # socket.timeout is TimeoutError
        kind = "timeout"
    else:
        kind = "connection"
    return f"{kind}: {reason}"


def _extract(fetched: tuple[Page, bytes | None]) -> tuple[Page, list[str] | None]:
    """The extract stage: the page's links resolved against its final URL (and
    its <base href>), by the native kernel; None for a page not parsed."""
    page, body = fetched
    if body is None:
        return page, None
    base = page.final_url or page.url
    try:
        return page, _core.extract_links(body, base)
    except ValueError:
        # A link that urljoin rejects: resolve one by one, keeping it raw for
        # the frontier to count as malformed.
        links, base_href = scan(body.decode("utf-8", "replace"))
        try:
            base = urljoin(base, base_href) if base_href is not None else base
        except ValueError:
            pass
        out = []
        for link in links:
            try:
                out.append(urljoin(base, link))
            except ValueError:
                out.append(link)
        return page, out


class CrawlResult:
    """The pages of a crawl: iterable over :class:`Page` (in the order they
    were fetched), and a mapping by normalised URL (``result[url]``,
    ``url in result``, ``result.get(url)``, ``result.urls()``).

    ``malformed`` counts the links kept out of the frontier as malformed;
    ``interrupted`` says Ctrl-C ended it early; ``stats`` holds each level's
    :class:`~parpy.PipelineStats` (empty for the reference crawler).
    JSON through ``as_dict()``/``to_json()``; a table in Jupyter."""

    def __init__(self) -> None:
        self._pages: dict[str, Page] = {}
        self.malformed = 0
        self.interrupted = False
        self.elapsed = 0.0
        self.stats: list[PipelineStats] = []

    def _add(self, page: Page) -> None:
        self._pages[page.url] = page

    def __iter__(self) -> Iterator[Page]:
        return iter(self._pages.values())

    def __len__(self) -> int:
        return len(self._pages)

    def __getitem__(self, url: str) -> Page:
        key = normalize(url) or url
        return self._pages[key]

    def __contains__(self, url: object) -> bool:
        if not isinstance(url, str):
            return False
        try:
            key = normalize(url) or url
        except ValueError:
            return False
        return key in self._pages

    def get(self, url: str, default: Page | None = None) -> Page | None:
        return self[url] if url in self else default

    def urls(self) -> list[str]:
        return list(self._pages)

    @property
    def errors(self) -> dict[str, str]:
        """URL -> error of every page that failed."""
        return {p.url: p.error for p in self if p.error is not None}

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": [p.as_dict() for p in self],
            "malformed": self.malformed,
            "interrupted": self.interrupted,
            "elapsed": self.elapsed,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.as_dict(), **kwargs)

    def _summary(self) -> str:
        failed = sum(p.error is not None for p in self)
        state = "interrupted" if self.interrupted else "finished"
        return (
            f"crawl {state}: {len(self)} URLs, {failed} failed, {self.malformed} malformed "
            f"links, {self.elapsed:.3f} s"
        )

    _HEAD = ("url", "status", "final url", "type", "bytes", "links", "s", "error")

    def _rows(self) -> list[tuple[str, ...]]:
        return [
            (
                p.url,
                "" if p.status is None else str(p.status),
                "" if p.final_url in (None, p.url) else str(p.final_url),
                p.content_type or "",
                f"{p.bytes}" + (" (cut)" if p.truncated else ""),
                "" if p.links is None else str(len(p.links)),
                f"{p.elapsed:.3f}",
                p.error or "",
            )
            for p in self
        ]

    def __str__(self) -> str:
        rows = [self._HEAD, *self._rows()]
        widths = [max(len(r[c]) for r in rows) for c in range(len(self._HEAD))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join([*lines, self._summary()])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEAD)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self._rows()
        )
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>{html.escape(self._summary())}</p>"
        )

    def __repr__(self) -> str:
        return f"<parpy.CrawlResult {self._summary()}>"


def _number(what: str, value: object, minimum: float, integer: bool) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an int" if integer else "a number"
        raise TypeError(f"{what} must be {want}, not {type(value).__name__}")
    if not value >= minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {value}")
    return value


def _start_urls(urls: str | Iterable[str]) -> list[str]:
    if isinstance(urls, str):
        urls = [urls]
    out: list[str] = []
    for url in urls:
        if not isinstance(url, str):
            raise TypeError(f"urls must be str, not {type(url).__name__}")
        key = normalize(url)
        if key is None:
            raise ValueError(f"only http and https URLs can be crawled, not {url!r}")
        if key not in out:
            out.append(key)
    return out


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
    backend: str = "native",
) -> CrawlResult:
    """Fetches urls and, up to ``depth`` links away, the pages they link to,
    breadth first, each URL once; returns a :class:`CrawlResult`.

    ``workers`` fetch at once, at most ``per_host`` to one host; each request
    has ``timeout`` seconds and reads at most ``max_bytes`` (the page is then
    cut and marked). With ``same_host`` only the start URLs' hosts are crawled.
    ``max_pages`` bounds the URLs fetched. ``backend``: the pipeline's
    ("native", "threading", "multiprocessing").

    Ctrl-C stops it at once: the KeyboardInterrupt raised carries the pages
    fetched so far as its ``result`` attribute.
    """
    starts = _start_urls(urls)
    depth = _number("depth", depth, 0, True)
    workers = _number("workers", workers, 1, True)
    timeout = float(_number("timeout", timeout, 0, False))
    if not timeout > 0:
        raise ValueError("timeout must be > 0")
    max_bytes = _number("max_bytes", max_bytes, 0, True)
    per_host = _number("per_host", per_host, 1, True)
    if max_pages is not None:
        max_pages = _number("max_pages", max_pages, 0, True)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}")
    if not isinstance(user_agent, str):
        raise TypeError(f"user_agent must be a str, not {type(user_agent).__name__}")

    result = CrawlResult()
    hosts = {_host(u) for u in starts}
    fetch = _Fetcher(timeout, max_bytes, per_host, bool(respect_robots), user_agent)
    pipe = Pipeline(
        [Stage(fetch, workers, name="fetch"), Stage(_extract, EXTRACT_WORKERS, name="extract")],
        ordered=False,
        backend=backend,
    )
    seen = set(starts)
    level = starts if max_pages is None else starts[:max_pages]
    began = time.perf_counter()
    try:
        with pipe:
            for level_depth in range(depth + 1):
                if not level:
                    break
                following: list[str] = []
                for page, links in pipe.imap((url, level_depth) for url in level):
                    if links is not None:
                        page = page._replace(links=tuple(_frontier(links, result)))
                    result._add(page)
                    if level_depth == depth or page.links is None:
                        continue
                    for link in page.links:
                        if link not in seen and (not same_host or _host(link) in hosts):
                            seen.add(link)
                            following.append(link)
                result.stats.append(pipe.stats())
                if max_pages is not None:
                    following = following[: max(0, max_pages - len(result))]
                level = following
    except KeyboardInterrupt as exc:
        result.interrupted = True
        result.elapsed = time.perf_counter() - began
        exc.result = result  # type: ignore[attr-defined]
        exc.add_note(f"parpy.crawl: interrupted; {len(result)} URLs done (see .result)")
        raise
    result.elapsed = time.perf_counter() - began
    return result


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

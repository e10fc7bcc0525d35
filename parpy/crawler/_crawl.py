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

Nothing here is module-level state: what a crawl shares lives in its own
:class:`_Gate` and :class:`_Sockets`. A process forked during a crawl reaches
them only through the SIGINT handler it inherited, which acts only in the
process that installed it.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import math
import multiprocessing
import os
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.managers import BaseManager
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

from parpy import _core
from parpy._support import progress as _progress
from parpy._support.processes import START_METHOD
from parpy._support.render import Table
from parpy.pipeline import BACKENDS, Pipeline, PipelineStats, Stage
from parpy.reference.links import scan

__all__ = ["CrawlResult", "Page", "crawl", "normalize"]

USER_AGENT = "parpy-crawl/0.1.0 (Python-urllib)"
MAX_BYTES = 8 * 1024 * 1024
PER_HOST = 2
MAX_REDIRECTS = 10
# The longest timeout a crawl takes: a day, in seconds.
MAX_TIMEOUT = 86400.0
HTML_TYPES = ("text/html", "application/xhtml+xml")
DEFAULT_PORTS = {"http": 80, "https": 443}
# How many extract workers: the kernel is fast next to the network.
EXTRACT_WORKERS = 2


class Page(NamedTuple):
    """What the crawl learned about one URL.

    ``status`` is the HTTP status (None when no response came); ``links`` the
    page's links, resolved and normalised, in document order (None when the
    page was not parsed); ``truncated`` that the body was cut at max_bytes;
    ``error`` a "kind: message" string, kind one of robots, offsite, dns,
    refused, timeout, tls, connection, http, http-protocol, incomplete,
    redirect, redirect-loop, cancelled, error, or None. A page with an error
    is never parsed (``links`` None).
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
    """url as the crawl keys it: scheme and host lower-cased, the userinfo
    (``user:password@``), the default port and the fragment dropped, an empty
    path made "/", unsafe characters percent-encoded as a browser does. None
    for a scheme other than http(s); ValueError if it is malformed (no host,
    a host no lookup can take, a bad port, a bad IPv6 literal)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None
    host = parts.hostname
    if not host or any(c <= " " or c in '<>"\\^`{|}\x7f' for c in host):
        raise ValueError(f"no valid host in {url!r}")
    try:
        host.encode("idna")  # as socket.getaddrinfo and http.client encode it
    except UnicodeError:
        raise ValueError(f"no valid host in {url!r}") from None
    port = parts.port  # ValueError when not a number in range
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    return urlunsplit((scheme, netloc, path, query, ""))


def _host(url: str) -> str:
    """The "host[:port]" of a normalised URL (which has no userinfo)."""
    return urlsplit(url).netloc


def _origin(url: str) -> str:
    """The "scheme://host[:port]" of a normalised URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _basic_auth(url: str) -> str | None:
    """The Authorization header that url's userinfo makes; None if it has none."""
    parts = urlsplit(url.strip())
    if parts.username is None:
        return None
    userinfo = unquote(parts.username) + ":" + unquote(parts.password or "")
    return "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")


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


class _Socket(socket.socket):
    """A socket whose every send and receive gets the time left before
    ``deadline`` (a time.monotonic() value) as its timeout: a reply dripped a
    byte at a time fails at the deadline, not at a timeout per read."""

    deadline = math.inf

    def _time_left(self) -> None:
        if self.deadline == math.inf:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.settimeout(left)

    def recv(self, *args: Any) -> bytes:
        self._time_left()
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._time_left()
        return super().recv_into(*args)

    def send(self, *args: Any) -> int:
        self._time_left()
        return super().send(*args)

    def sendall(self, *args: Any) -> None:
        self._time_left()
        super().sendall(*args)


class _SSLSocket(_Socket, ssl.SSLSocket):
    """The same over TLS (the context's ``sslsocket_class``): its reads and
    writes go to ssl.SSLSocket's."""


class _Sockets:
    """The sockets of this process's fetches in flight, so that a cancel can
    shut them down: a fetch blocked in connect or recv then fails at once
    instead of at its timeout. Each is registered as a duplicate of its file
    descriptor, which this object closes, so a shutdown never reaches a
    descriptor number that the fetch's own close let the system reuse."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, list[socket.socket]] = {}
        self.cancelled = False

    def connect(
        self, address: tuple[str, int], timeout: Any, source_address: Any = None
    ) -> socket.socket:
        """socket.create_connection, the socket registered before it connects;
        connect and every later send and receive end by ``timeout`` from now."""
        host, port = address
        deadline = math.inf
        if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
            deadline = time.monotonic() + timeout
        error: OSError | None = None
        for family, kind, proto, _, where in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = _Socket(family, kind, proto)
            try:
                self._register(sock)
                sock.deadline = deadline
                sock._time_left()
                if source_address:
                    sock.bind(source_address)
                sock.connect(where)
                sock._time_left()  # what the TLS handshake, if any, may take
                return sock
            except OSError as exc:
                sock.close()
                if self.cancelled:
                    raise _Cancelled from None
                error = exc
        raise error or OSError("getaddrinfo returned no address")

    def _register(self, sock: socket.socket) -> None:
        with self._lock:
            if self.cancelled:
                raise _Cancelled
            self._open.setdefault(threading.get_ident(), []).append(sock.dup())

    def done(self) -> None:
        """The calling thread's fetch is over: its duplicates are closed."""
        with self._lock:
            socks = self._open.pop(threading.get_ident(), [])
        for sock in socks:
            sock.close()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for socks in self._open.values():
                for sock in socks:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # not connected yet, or already closed by its peer


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, sockets: _Sockets, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = sockets.connect  # type: ignore[assignment]


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, sockets: _Sockets, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = sockets.connect  # type: ignore[assignment]

    def connect(self) -> None:
        # As HTTPSConnection.connect, the TLS socket keeping the deadline.
        http.client.HTTPConnection.connect(self)
        raw = self.sock
        context: ssl.SSLContext = self._context  # type: ignore[attr-defined]
        hostname = self._tunnel_host or self.host  # type: ignore[attr-defined]
        sock = context.wrap_socket(raw, server_hostname=hostname)
        assert isinstance(raw, _Socket) and isinstance(sock, _SSLSocket)
        sock.deadline = raw.deadline
        self.sock = sock


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, sockets: _Sockets) -> None:
        super().__init__()
        self._sockets = sockets

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, sockets=self._sockets), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, sockets: _Sockets) -> None:
        # As http.client's default context, making deadline-keeping sockets.
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        context.sslsocket_class = _SSLSocket
        super().__init__(context=context)
        self._sockets = sockets

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPSConnection, sockets=self._sockets)
        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect arrives as an HTTPError: the fetch follows it itself."""

    def redirect_request(self, *args: Any) -> None:
        return None


REDIRECTS = (301, 302, 303, 307, 308)


class _Budget:
    """The seconds one page's fetch has left. It is spent only while a
    request holds one of its host's slots: waiting for a slot is not the
    fetch's time."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    @contextmanager
    def spending(self) -> Iterator[float]:
        """Yields the seconds left (TimeoutError if none), and takes off what the block took."""
        if self.left <= 0:
            raise TimeoutError("timed out")
        began = time.monotonic()
        try:
            yield self.left
        finally:
            self.left -= time.monotonic() - began


class _Fetcher:
    """The fetch stage: one URL (with its depth) -> (Page, body or None).

    It follows redirects one hop at a time, each hop checked like a link
    (robots.txt, the start hosts, not taken on before, no loop) and each
    request holding one of its host's slots. Picklable for the
    multiprocessing backend: each process builds its own opener and robots
    parsers; the :class:`_Gate` is shared.

    ``timeout`` bounds each page: its requests, redirects included, have
    that many seconds in all; robots.txt has as many of its own. ``auth``
    maps an origin to the Authorization header its requests carry."""

    def __init__(
        self,
        gate: _Gate,
        hosts: set[str] | None,
        timeout: float,
        max_bytes: int,
        robots: bool,
        user_agent: str,
        auth: dict[str, str],
    ) -> None:
        self.gate = gate
        self.hosts = hosts  # None: any host
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.robots = robots
        self.user_agent = user_agent
        self.auth = auth
        self._init_state()

    _KEEP = ("gate", "hosts", "timeout", "max_bytes", "robots", "user_agent", "auth")

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.sockets = _Sockets()
        self._opener = urllib.request.build_opener(
            _HTTPHandler(self.sockets), _HTTPSHandler(self.sockets), _NoRedirects()
        )
        self._opener.addheaders = [("User-Agent", self.user_agent)]

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._KEEP}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    def cancel(self) -> None:
        """Ends this process's fetches in flight and refuses new ones."""
        self.sockets.cancel()
        if isinstance(self.gate, _Gate):
            self.gate.cancel()

    def _get(self, url: str, budget: _Budget) -> tuple[Any, bytes, int]:
        """One request, holding one of the host's slots, in the time budget
        has left: (response, at most max_bytes + 1 bytes of body, the bytes
        missing from a body that ended short of its Content-Length). The
        response is closed; an HTTP error status raises HTTPError."""
        host = _host(url)
        auth = self.auth.get(_origin(url))
        request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
        self.gate.acquire(host)
        try:
            with budget.spending() as left, self._opener.open(request, timeout=left) as response:
                body = response.read(self.max_bytes + 1)
                missing = response.length or 0 if len(body) <= self.max_bytes else 0
                return response, body, missing
        finally:
            self.gate.release(host)

    def _allowed(self, url: str) -> bool:
        """Whether the host's robots.txt (fetched once per crawl) lets us fetch url."""
        parts = urlsplit(url)
        host = parts.netloc
        with self._lock:
            rules = self._rules.get(host)
        if rules is None:
            lines = self.gate.robots(host)
            if lines is None:
                try:
                    lines = self._robots_lines(f"{parts.scheme}://{host}/robots.txt")
                finally:
                    self.gate.set_robots(host, lines)
            rules = urllib.robotparser.RobotFileParser()
            rules.parse(lines)
            with self._lock:
                self._rules[host] = rules
        return rules.can_fetch(self.user_agent, url)

    def _robots_lines(self, url: str) -> list[str]:
        # As RobotFileParser.read (which would use urlopen, without our
        # timeout and agent): 401/403 forbid everything, other errors
        # (whatever a fetch raises, a body short of its length) nothing.
        try:
            _, body, missing = self._get(url, _Budget(self.timeout))
        except _Cancelled:
            raise
        except urllib.error.HTTPError as exc:
            exc.close()
            return ["User-agent: *", "Disallow: /"] if exc.code in (401, 403) else []
        except Exception:
            if self.sockets.cancelled:
                raise _Cancelled from None
            return []
        if missing:
            return []
        return body[: self.max_bytes].decode("utf-8", "replace").splitlines()

    def _refusal(self, url: str) -> str | None:
        """Why url (a start URL, a link or a redirect's target) is not fetched; None if it is."""
        if self.hosts is not None and _host(url) not in self.hosts:
            return f"offsite: {url} is not on the start hosts"
        if self.robots and not self._allowed(url):
            return f"robots: {url} is disallowed by robots.txt"
        return None

    def __call__(self, item: tuple[str, int]) -> tuple[Page, bytes | None]:
        url, depth = item
        try:
            return self._fetch(url, depth)
        except _Cancelled:
            return Page(url, None, None, None, 0, 0.0, None, depth, error="cancelled"), None
        except Exception as exc:  # a fetch's failure is its page's, never the crawl's
            error = _kind(exc, self.timeout, self.sockets.cancelled)
            return Page(url, None, None, None, 0, 0.0, None, depth, error=error), None
        finally:
            self.sockets.done()

    def _fetch(self, url: str, depth: int) -> tuple[Page, bytes | None]:
        start = time.perf_counter()
        chain = [url]  # the URLs requested, redirects followed

        def failed(error: str | None, status: int | None = None) -> tuple[Page, None]:
            final = chain[-1] if len(chain) > 1 or status is not None else None
            page = Page(url, final, status, None, 0, time.perf_counter() - start, None, depth,
                        error=error)  # fmt: skip
            return page, None

        refusal = self._refusal(url)
        if refusal is not None:
            return failed(refusal)
        budget = _Budget(self.timeout)
        while True:
            try:
                response, body, missing = self._get(chain[-1], budget)
            except _Cancelled:
                raise
            except urllib.error.HTTPError as exc:
                exc.close()
                location = exc.headers.get("Location") if exc.headers is not None else None
                if exc.code not in REDIRECTS or not location:
                    return failed(f"http: {exc.code} {exc.reason}", exc.code)
                status = exc.code
            except Exception as exc:  # whatever urllib, http.client, ssl, socket raise
                return failed(_kind(exc, self.timeout, self.sockets.cancelled))
            else:
                truncated = len(body) > self.max_bytes
                body = body[: self.max_bytes]
                content_type = response.headers.get_content_type()
                error = None
                if missing:  # never a clean page: an error, not parsed
                    error = f"incomplete: {len(body)} of {len(body) + missing} bytes"
                page = Page(url, chain[-1], response.status, content_type, len(body),
                            time.perf_counter() - start, None, depth, truncated, error)  # fmt: skip
                return page, body if content_type in HTML_TYPES and error is None else None
            # A redirect: the next hop, if it may be taken.
            try:
                target = normalize(urljoin(chain[-1], location))
            except ValueError:
                target = None
            if target is None:
                return failed(f"redirect: to {location!r}, not an http(s) URL", status)
            if target in chain:
                chain.append(target)
                hops = " -> ".join(chain)
                return failed(f"redirect-loop: {hops}", status)
            if len(chain) > MAX_REDIRECTS:
                return failed(f"redirect-loop: more than {MAX_REDIRECTS} redirects", status)
            chain.append(target)
            refusal = self._refusal(target)
            if refusal is not None:
                return failed(refusal, status)
            if not self.gate.claim(target):
                return failed(None, status)  # crawled as a URL of its own


def _kind(exc: BaseException, timeout: float, cancelled: bool = False) -> str:
    """The "kind: message" of a fetch that raised exc (urllib's URLError
    stands for its reason), ``timeout`` the page's time."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if cancelled:
        return "cancelled: the crawl was interrupted"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return f"timeout: no complete reply within {timeout:g} s"
    message = _short(str(exc))
    if isinstance(exc, socket.gaierror):
        kind = "dns"
    elif isinstance(exc, ConnectionRefusedError):
        kind = "refused"
    elif isinstance(exc, ssl.SSLError):
        kind = "tls"
    elif isinstance(exc, OSError):  # http.client's RemoteDisconnected too
        kind = "connection"
    elif isinstance(exc, http.client.HTTPException):  # a reply that breaks HTTP/1.1
        kind, message = "http-protocol", _short(repr(exc))
    else:
        kind, message = "error", _short(repr(exc))
    return f"{kind}: {message}"


def _short(message: str, most: int = 200) -> str:
    """message, cut to most characters: a server may make it 64 KiB long."""
    return message if len(message) <= most else message[: most - 3] + "..."


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

    def _table(self) -> Table:
        return Table("crawl", self._HEAD, self._rows(), notes=[self._summary()], align="lrllrrrl")

    def __str__(self) -> str:
        return self._table().text()

    def _repr_html_(self) -> str:
        return self._table().html()

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
    """Fetches urls and, up to ``depth`` links away, the pages they link to,
    breadth first, each URL once; returns a :class:`CrawlResult`.

    ``workers`` fetch at once, at most ``per_host`` to one host; each page
    has ``timeout`` seconds (at most a day) for all its requests, redirects
    included, and reads at most ``max_bytes`` (the page is then cut and
    marked). A start URL's ``user:password@`` is sent as HTTP Basic auth to
    that URL's scheme, host and port only. With ``same_host`` only the start
    URLs' hosts are crawled, redirects included. ``max_pages`` bounds the URLs fetched.
    ``respect_robots``: obey each host's robots.txt (fetched once a crawl).
    ``progress``: a tqdm bar of the pages done. ``backend``: the pipeline's
    ("native", "threading", "multiprocessing").

    Whatever a fetch raises is recorded on its page. Ctrl-C stops the crawl
    at once, the fetches in flight included: the KeyboardInterrupt raised
    carries the pages fetched so far as its ``result`` attribute.
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

"""The crawl's two stages: fetch (:class:`_Fetcher`) and extract (:func:`_extract`).

A fetch checks robots.txt, takes one of the host's slots from the crawl's
:class:`~parpy.crawler._gate._Gate`, fetches within the page's timeout (every
hop's connect, send and receive together: each socket operation gets the time
left, see :class:`_Socket`), reads at most ``max_bytes``, and follows
redirects itself, one hop at a time, each hop checked like a link. Every
failure, whatever it raises, becomes its page's error. The sockets of the
fetches in flight are registered (:class:`_Sockets`), so that a cancel shuts
them down at once.

Extract calls the native kernel ``parpy.extract_links(body, final_url)``,
which computes without the GIL.
"""

from __future__ import annotations

import functools
import http.client
import math
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

from parpy import _core
from parpy.crawler._gate import _Cancelled, _Gate
from parpy.crawler._urls import _host, _origin, normalize
from parpy.crawler.result import Page
from parpy.reference.links import scan

USER_AGENT = "parpy-crawl/0.1.0 (Python-urllib)"
MAX_BYTES = 8 * 1024 * 1024
MAX_REDIRECTS = 10
HTML_TYPES = ("text/html", "application/xhtml+xml")


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

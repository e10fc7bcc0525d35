"""A generated website on 127.0.0.1, for crawls that measure something:
``python -m parpy compare crawl``, the crawl benchmarks, the tests.

The server runs in a child process (started with parpy's start method,
"forkserver" where the platform has it, else "spawn"), so that handling its
requests never takes the measuring process's GIL: a ThreadingHTTPServer with
a thread per request and room in its listen queue for 128 clients.

What it serves: "/" an index linking every page; "/p/{i}.html" page i, after
``delay`` seconds, about ``size`` bytes of HTML with ``links`` links to other
pages, drawn reproducibly from ``seed`` (absolute paths, relative paths, some
with fragments; quoted both ways, between text and markup that is not a
link); "/robots.txt" allowing everything; 404 for anything else.

Lifetime: the server starts with the Site (:data:`START_TIMEOUT` seconds for
it to report its port, else RuntimeError) and stops on :meth:`Site.close`,
at the end of a ``with`` block, when the Site is garbage collected, and when
this process exits (the child is daemonic); a child whose parent died ends
by itself.
"""

from __future__ import annotations

import bisect
import multiprocessing
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.request
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection, wait
from typing import Any
from urllib.parse import urlsplit

from parpy._support.processes import START_METHOD
from parpy.crawler._fetch import USER_AGENT

__all__ = ["START_TIMEOUT", "Site", "fetch", "page_path"]

HOST = "127.0.0.1"  # never any other address
START_TIMEOUT = 30.0  # seconds for the server to report its port
STOP_TIMEOUT = 5.0  # seconds for it to end after SIGTERM, then after SIGKILL
FETCH_TIMEOUT = 10.0
PAGE_PATH = re.compile(r"/p/(0|[1-9][0-9]*)\.html")


def page_path(i: int) -> str:
    """Return the path of page i.

    Parameters
    ----------
    i : int
        The page's number.

    Returns
    -------
    str
        "/p/{i}.html".
    """
    return f"/p/{i}.html"


def fetch(url: str) -> bytes:
    """Return the body at url, by a plain urllib GET.

    The fetch stage of ``compare("crawl")``, picklable for worker processes.

    Parameters
    ----------
    url : str
        The URL.

    Returns
    -------
    bytes
        The body.

    Raises
    ------
    urllib.error.HTTPError
        For a status >= 400.
    urllib.error.URLError
        If there is no answer (refused, timeout, ...).
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        body: bytes = response.read()
    return body


_WORDS = (
    "parallel crawl fetch queue kernel thread lock page link native python worker "
    "pipeline stage batch latency socket server request header body token frontier "
    "robots depth level host cache buffer"
).split()
# The forms of a page's links (the seed draws one for each).
_LINK_FORMS = (
    '<a href="/p/{j}.html">page {j}</a>',
    '<a class="next" href="{j}.html">page {j}</a>',
    "<a href='/p/{j}.html#part{k}' title=\"part {k}\">page {j}, part {k}</a>",
    '<a href="./{j}.html">page {j}</a>',
)


class _Content:
    """The site's pages, made on request (cheaply: slices of one filler text)."""

    def __init__(self, pages: int, links: int, size: int, seed: int) -> None:
        self.pages = pages
        self.links = links
        self.seed = seed
        # A filler of whole lines of markup that is no link, long enough to
        # take a page's worth of it from any line of its first half.
        rng = random.Random(seed)
        lines: list[str] = []
        total = 0
        while total < size + 4096:
            lines.append(_filler_line(rng, len(lines)))
            total += len(lines[-1])
        self.first_half = len(lines)
        lines += lines
        self.filler = "".join(lines)
        self.starts = [0]
        for line in lines:
            self.starts.append(self.starts[-1] + len(line))
        self.quota = max(0, size - 200) // (links + 1)  # filler between two links

    def page(self, i: int) -> bytes:
        rng = random.Random(f"{self.seed}/{i}")
        parts = [
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Page {i}</title>'
            f'</head>\n<body>\n<h1 id="top">Page {i}</h1>\n'
        ]
        for k in range(self.links + 1):
            begin = self.starts[rng.randrange(self.first_half)]
            end = self.starts[bisect.bisect_left(self.starts, begin + self.quota)]
            parts.append(self.filler[begin:end])
            if k < self.links:
                form = rng.choice(_LINK_FORMS)
                parts.append(form.format(j=rng.randrange(self.pages), k=k) + "\n")
        parts.append("</body></html>\n")
        return "".join(parts).encode()

    def index(self) -> bytes:
        items = "".join(f'<li><a href="{page_path(i)}">{i}</a></li>\n' for i in range(self.pages))
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index</title></head>\n'
            f"<body>\n<ul>\n{items}</ul>\n</body></html>\n"
        ).encode()


def _filler_line(rng: random.Random, k: int) -> str:
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 14)))
    kind = k % 5
    if kind == 0:
        return f"<p>{words}.</p>\n"
    if kind == 1:
        return f'<div class="c{rng.randrange(9)}"><span>{words}</span> &amp; <em>{k}</em></div>\n'
    if kind == 2:
        return f'<img src="/img/{k}.png" alt="{words}" width="{rng.randint(10, 99)}">\n'
    if kind == 3:
        return f'<link rel="preload" href="/s/{k}.css"><b>{words}</b><br>\n'
    return f"<!-- {words} --><table><tr><td>{words}</td></tr></table>\n"


# ---- the child process ---------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: 64 clients at once, and more

    def __init__(self, content: _Content, delay: float, requests: Any) -> None:
        super().__init__((HOST, 0), _Handler)
        self.content = content
        self.delay = delay
        self.requests = requests

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away: quiet
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        server = self.server
        with server.requests.get_lock():
            server.requests.value += 1
        path = urlsplit(self.path).path
        status, kind, body = 200, "text/html; charset=utf-8", b""
        page = PAGE_PATH.fullmatch(path)
        if page is not None and int(page[1]) < server.content.pages:
            time.sleep(server.delay)
            body = server.content.page(int(page[1]))
        elif path == "/":
            body = server.content.index()
        elif path == "/robots.txt":
            kind, body = "text/plain; charset=utf-8", b"User-agent: *\nAllow: /\n"
        else:
            status, kind, body = 404, "text/plain; charset=utf-8", b"not found\n"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout, a body cut at its max_bytes)


def _serve(content: _Content, delay: float, requests: Any, port: Connection) -> None:
    """The child: serve until terminated, or until the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    server = _Server(content, delay, requests)
    threading.Thread(target=server.serve_forever, name="parpy-site", daemon=True).start()
    port.send(server.server_address[1])
    port.close()
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
    os._exit(0)


# ---- the parent's side ---------------------------------------------------------


class Site:
    """A generated website, served on 127.0.0.1 by a child process.

    Served from the moment it is made until :meth:`close` (or the end of a
    ``with`` block). ``url`` is its root, "http://127.0.0.1:PORT/", the index
    page, which links every page: a crawl of depth 1 from it fetches them
    all. :meth:`urls` lists the pages' URLs; :meth:`requests` counts the
    requests served; ``pid`` is the server process's id. The index and
    "/robots.txt" (which allows everything) answer at once.

    Parameters
    ----------
    pages : int, default 200
        The pages, >= 1; page i is "/p/{i}.html".
    delay : float, default 0.02
        Seconds a page takes to answer.
    links : int, default 8
        Links on each page to other pages.
    size : int, default 16384
        About how many bytes of HTML a page has.
    seed : int, default 0
        Draws the pages' links and text, reproducibly.

    Raises
    ------
    TypeError
        If ``pages``, ``links``, ``size`` or ``seed`` is not an int.
    ValueError
        If a number is out of range, or ``delay`` is not a number >= 0.
    RuntimeError
        If the server process does not report its port within
        ``START_TIMEOUT`` seconds, or exits first.
    """

    def __init__(
        self,
        pages: int = 200,
        delay: float = 0.02,
        links: int = 8,
        size: int = 16 * 1024,
        seed: int = 0,
    ) -> None:
        for name, value, least in (
            ("pages", pages, 1), ("links", links, 0), ("size", size, 0), ("seed", seed, 0)
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < least:
                raise ValueError(f"{name} must be >= {least}, not {value}")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ValueError(f"delay must be a number of seconds >= 0, not {delay!r}")
        self.pages = pages
        self.delay = float(delay)
        context: Any = multiprocessing.get_context(START_METHOD)
        self._requests = context.Value("q", 0)
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(
            target=_serve,
            args=(_Content(pages, links, size, seed), self.delay, self._requests, writer),
            name="parpy-site",
            daemon=True,
        )
        process.start()
        writer.close()
        self._stop = weakref.finalize(self, _stop, process)
        try:
            port = _port(reader, process)
        except BaseException:
            self._stop()
            raise
        finally:
            reader.close()
        self.url = f"http://{HOST}:{port}/"
        self.pid: int = process.pid

    def urls(self) -> list[str]:
        """Return the pages' URLs, in order, as parpy.crawl keys them.

        Returns
        -------
        list of str
            The URL of each page (the index, ``url``, aside).
        """
        return [self.url + page_path(i)[1:] for i in range(self.pages)]

    def requests(self) -> int:
        """Return how many requests the server has answered or is answering.

        Returns
        -------
        int
            The count, since the site started.
        """
        return int(self._requests.value)

    def close(self) -> None:
        """Stop the server and end its process (again: nothing)."""
        self._stop()

    @property
    def closed(self) -> bool:
        return not self._stop.alive

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<parpy Site {self.url} {self.pages} pages, {self.delay * 1000:g} ms, {state}>"


def _port(reader: Connection, process: Any) -> int:
    """The port the child reports; RuntimeError if it dies or is silent for START_TIMEOUT s."""
    ready = wait([reader, process.sentinel], START_TIMEOUT)
    if reader in ready:
        try:
            port = reader.recv()
        except EOFError:
            pass
        else:
            return int(port)
    if not ready:
        raise RuntimeError(
            f"the site's server process did not report its port within {START_TIMEOUT:g} s"
        )
    process.join(STOP_TIMEOUT)
    raise RuntimeError(
        f"the site's server process exited (code {process.exitcode}) before it reported its port"
    )


def _stop(process: Any) -> None:
    process.terminate()
    process.join(STOP_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join(STOP_TIMEOUT)

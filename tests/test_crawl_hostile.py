"""parpy.crawl against hostile servers the tests start on 127.0.0.1.

Each server writes its replies byte for byte, whatever HTTP says: a garbage
status line, a header line over 64 KiB, over 100 headers, a truncated or
invalid chunked body, a body shorter than its Content-Length, no reply at
all, a reply dripped a byte at a time. Every such page is an error on that
page and the crawl goes on; ``timeout`` bounds a page's whole fetch. Also:
credentials in URLs (never resolved, never in a Host header, sent as Basic
auth to their own origin only) and the arguments refused before anything is
fetched. No test touches an address outside loopback.
"""

from __future__ import annotations

import base64
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import parpy
import parpy.reference

BACKENDS = ["native", "threading", "multiprocessing"]
TIMEOUT = 1.0  # the crawls' timeout, seconds
DRIP = 0.5  # seconds between two bytes of a dripped reply
# How long a crawl whose slowest page is cut at TIMEOUT may take: TIMEOUT
# and a generous margin for a loaded machine.
BOUND = TIMEOUT + 1.5
# A self-signed certificate for 127.0.0.1 (valid until 2126) and its key.
TLS_CERT = Path(__file__).with_name("crawl_tls.pem")

Reply = Callable[["Raw"], None]


class Hostile(ThreadingHTTPServer):
    """127.0.0.1 on a port of its own: each path's reply is a function that
    writes what it likes to the connection. It records every request's path,
    Host and Authorization header. With ``tls``, HTTPS with TLS_CERT."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, replies: dict[str, Reply], host: str = "127.0.0.1", tls: bool = False):
        super().__init__((host, 0), Raw)
        self.name = f"{host}:{self.server_address[1]}"
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS_CERT)
            # The handshake on the request's thread, at its first read.
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.replies = replies
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None, str | None]] = []

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.name}{path}"

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _, _ in self.requests]


class Raw(BaseHTTPRequestHandler):
    server: Hostile
    timeout = 10  # on the request's socket: a client that never sends does not hold a thread

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests.append(
                (self.path, self.headers.get("Host"), self.headers.get("Authorization"))
            )
        reply = server.replies.get(self.path, NOT_FOUND)
        try:
            reply(self)
        except OSError:
            pass  # the client gave up
        self.close_connection = True


@pytest.fixture
def serve():
    """serve(replies) -> a running Hostile server; all stopped after the test."""
    servers: list[tuple[Hostile, threading.Thread]] = []

    def start(replies: dict[str, Reply], host: str = "127.0.0.1", tls: bool = False) -> Hostile:
        server = Hostile(replies, host, tls)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.stopping.set()  # dripping replies end within DRIP
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def raw(data: bytes) -> Reply:
    return lambda h: h.wfile.write(data)


def reply(status: str, body: bytes, content_type: str = "text/html", **headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    head += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def html(*hrefs: str) -> bytes:
    links = "".join(f'<a href="{h}">x</a>\n' for h in hrefs)
    return f"<!doctype html><html><body>{links}</body></html>".encode()


def page(*hrefs: str) -> Reply:
    return raw(reply("200 OK", html(*hrefs)))


def redirect(to: str) -> Reply:
    return raw(reply("302 Found", b"", Location=to))


def drip(data: bytes, every: float = DRIP, at_once: int = 0) -> Reply:
    """data[:at_once] at once, then the rest one byte every ``every`` seconds."""

    def answer(h: Raw) -> None:
        h.wfile.write(data[:at_once])
        for i in range(at_once, len(data)):
            if h.server.stopping.wait(every):
                return
            h.wfile.write(data[i : i + 1])

    return answer


NOT_FOUND = raw(reply("404 Not Found", b"not found"))
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"

# A reply that breaks HTTP/1.1, and the start of the error on its page.
MALFORMED = {
    "garbage status line": (raw(b"GARBAGE\r\n\r\n"), "http-protocol: BadStatusLine"),
    "header line over 64 KiB": (
        raw(OK_HEAD + b"X-Long: " + b"x" * 70_000 + b"\r\n\r\n"),
        "http-protocol: LineTooLong",
    ),
    "over 100 headers": (
        raw(OK_HEAD + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n"),
        "http-protocol: HTTPException('got more than 100 headers')",
    ),
    "truncated chunked body": (
        raw(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n20\r\n<html><a href='/x'>"),
        "http-protocol: IncompleteRead",
    ),
    "invalid chunk size": (
        raw(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n<html>\r\n0\r\n\r\n"),
        "http-protocol: IncompleteRead",
    ),
    "no reply": (lambda h: None, "connection: Remote end closed connection without response"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_reply_is_an_error_on_its_page(serve, case):
    answer, error = MALFORMED[case]
    server = serve({"/": page("/bad", "/good"), "/bad": answer, "/good": page()})
    result = parpy.crawl(server.url("/"), depth=1, timeout=5.0)
    assert set(result.urls()) == {server.url(p) for p in ("/", "/bad", "/good")}
    bad = result[server.url("/bad")]
    assert bad.error is not None and bad.error.startswith(error), bad.error
    assert bad.links is None
    assert result[server.url("/good")].error is None
    assert result[server.url("/")].links == (server.url("/bad"), server.url("/good"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_site_with_one_bad_link_keeps_every_other_page(serve, backend):
    pages = {f"/p/{i}": page("/", f"/p/{(i + 1) % 30}") for i in range(30)}
    index = page(*pages, "/bad", "/gone")
    server = serve({"/": index, **pages, "/bad": MALFORMED["garbage status line"][0],
                    "/gone": MALFORMED["no reply"][0]})  # fmt: skip
    result = parpy.crawl(server.url("/"), depth=2, timeout=5.0, backend=backend)
    assert len(result) == 33
    assert set(result.errors) == {server.url("/bad"), server.url("/gone")}
    assert all(result[server.url(p)].status == 200 for p in pages)


@pytest.mark.timeout(60)
def test_the_reference_crawler_records_a_malformed_reply_too(serve):
    bad = MALFORMED["garbage status line"][0]
    server = serve({"/": page("/bad", "/good"), "/bad": bad, "/good": page()})
    result = parpy.reference.crawl(server.url("/"), depth=1, timeout=5.0)
    assert result[server.url("/bad")].error.startswith("connection: ")
    assert result[server.url("/good")].error is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "robots",
    [MALFORMED["garbage status line"][0], MALFORMED["over 100 headers"][0],
     drip(b"HTTP/1.1 200 OK\r\n\r\nUser-agent: *\r\nDisallow: /\r\n")],
    ids=["garbage", "over 100 headers", "dripped"],
)  # fmt: skip
def test_a_robots_txt_that_breaks_http_or_never_ends_allows_everything(serve, robots):
    server = serve({"/robots.txt": robots, "/": page("/a"), "/a": page()})
    began = time.monotonic()
    result = parpy.crawl(server.url("/"), depth=1, timeout=TIMEOUT)
    assert time.monotonic() - began < BOUND + TIMEOUT
    assert [p.error for p in result] == [None, None]
    assert server.paths().count("/robots.txt") == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_body_shorter_than_its_content_length_is_incomplete(serve, backend):
    sent = b"<a href='/x'>xxx"
    assert len(sent) == 16
    short = OK_HEAD + b"Content-Length: 1000\r\n\r\n" + sent
    server = serve({"/short": raw(short), "/whole": page("/x")})
    result = parpy.crawl([server.url("/short"), server.url("/whole")], timeout=5.0,
                         backend=backend)  # fmt: skip
    short_page = result[server.url("/short")]
    assert short_page.error == "incomplete: 16 of 1000 bytes"
    assert (short_page.status, short_page.bytes, short_page.truncated) == (200, 16, False)
    assert short_page.links is None  # a page with an error is not parsed
    assert result[server.url("/whole")].error is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dripped", ["status line", "body"])
def test_timeout_bounds_the_whole_fetch_of_a_dripped_page(serve, backend, dripped):
    body = html("/x") + b" " * 40
    whole = reply("200 OK", body)
    at_once = len(whole) - len(body) if dripped == "body" else 0
    server = serve({"/drip": drip(whole, at_once=at_once), "/ok": page()})
    began = time.monotonic()
    result = parpy.crawl([server.url("/drip"), server.url("/ok")], timeout=TIMEOUT,
                         backend=backend)  # fmt: skip
    took = time.monotonic() - began
    dripped_page = result[server.url("/drip")]
    assert dripped_page.error == "timeout: no complete reply within 1 s"
    assert result[server.url("/ok")].error is None
    # The drip would take 50 s or more; a timeout per read never fires. (The worker
    # processes of the multiprocessing backend take seconds to start on a
    # loaded machine.)
    assert dripped_page.elapsed < BOUND, dripped_page.elapsed
    assert took < (15.0 if backend == "multiprocessing" else BOUND), took


@pytest.mark.timeout(60)
def test_timeout_bounds_a_dripped_redirect_chain(serve):
    # Each hop's reply takes 2 * 0.3 s, under the timeout; the six together
    # take 3.6 s.
    hops = {f"/r{i}": drip(reply("302 Found", b"", Location=f"/r{i + 1}"), every=0.3,
                          at_once=len(reply("302 Found", b"", Location=f"/r{i + 1}")) - 2)
            for i in range(6)}  # fmt: skip
    server = serve({**hops, "/r6": page()})
    began = time.monotonic()
    result = parpy.crawl(server.url("/r0"), timeout=TIMEOUT)
    took = time.monotonic() - began
    chain = result[server.url("/r0")]
    assert chain.error == "timeout: no complete reply within 1 s"
    assert chain.final_url in {server.url(f"/r{i}") for i in range(1, 6)}
    assert took < BOUND, took
    assert "/r6" not in server.paths()


@pytest.mark.timeout(60)
def test_waiting_for_a_host_slot_is_not_a_pages_time(serve):
    # One slot on the host, three pages of 0.6 s each: the last waits 1.2 s
    # for the slot, then fetches within its timeout.
    slow = drip(reply("200 OK", html()), every=0.3, at_once=len(reply("200 OK", html())) - 2)
    server = serve({f"/s{i}": slow for i in range(3)})
    urls = [server.url(f"/s{i}") for i in range(3)]
    result = parpy.crawl(urls, workers=3, per_host=1, timeout=TIMEOUT)
    assert [p.error for p in result] == [None, None, None]


@pytest.mark.timeout(60)
def test_a_tls_reply_that_is_not_tls_is_a_tls_error():
    # A server that answers the TLS ClientHello with plain text.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(4096)
                conn.sendall(b"GARBAGE\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/"
        result = parpy.crawl(url, timeout=5.0)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert result[url].error.startswith("tls: "), result[url].error


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["native", "threading"])  # (workers in processes: no env)
def test_https_pages_and_the_timeout_over_tls(serve, backend, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_CERT))  # what the default context trusts
    dripped = reply("200 OK", html() + b" " * 40)
    server = serve(
        {"/": page("/a", "/drip"), "/a": page(), "/drip": drip(dripped, at_once=len(dripped) - 40)},
        tls=True,
    )
    began = time.monotonic()
    result = parpy.crawl(server.url("/"), depth=1, timeout=TIMEOUT, backend=backend)
    took = time.monotonic() - began
    assert result[server.url("/")].links == (server.url("/a"), server.url("/drip"))
    assert result[server.url("/a")].error is None
    assert result[server.url("/drip")].error == "timeout: no complete reply within 1 s"
    assert took < BOUND, took
    assert sorted(server.paths()) == ["/", "/a", "/drip", "/robots.txt"]


# ---- credentials in URLs ---------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_credentials_go_as_basic_auth_to_their_origin_only(serve, backend, monkeypatch):
    other = serve({"/": page()}, host="localhost")
    main = serve({})
    port = main.server_address[1]
    main.replies.update({
        "/": page("/a", f"http://link:linkpw@127.0.0.1:{port}/b", "/r", "/away"),
        "/a": page(), "/b": page(), "/c": page(),
        "/r": redirect(f"http://hop:hoppw@127.0.0.1:{port}/c"),
        "/away": redirect(f"http://away:awaypw@{other.name}/"),
    })  # fmt: skip
    resolved: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        resolved.append(host)
        assert host in ("127.0.0.1", "localhost"), host  # never leaves loopback
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    start = f"http://us%40er:p%40ss:w@127.0.0.1:{port}/"
    result = parpy.crawl(start, depth=1, same_host=False, timeout=5.0, backend=backend)

    assert set(result.urls()) == {main.url(p) for p in ("/", "/a", "/b", "/r", "/away")}
    assert start in result and result[start].url == main.url("/")
    assert result[main.url("/r")].final_url == main.url("/c")
    assert result[main.url("/away")].final_url == f"http://{other.name}/"
    # The start URL's user and password (percent-decoded) to its origin, on
    # every request there, robots.txt included; a link's or a redirect's own
    # userinfo is dropped.
    paths = {"/robots.txt", "/", "/a", "/b", "/r", "/c", "/away"}
    assert {path for path, _, _ in main.requests} == paths
    assert {auth for _, _, auth in main.requests} == {basic("us@er", "p@ss:w")}
    assert {host for _, host, _ in main.requests} == {main.name}
    # Nothing to another origin.
    assert {(path, host, auth) for path, host, auth in other.requests} == {
        ("/robots.txt", other.name, None), ("/", other.name, None)
    }  # fmt: skip
    # No credentials in a lookup (worker processes resolve in their own
    # process), nor in the result.
    if backend != "multiprocessing":
        assert set(resolved) == {"127.0.0.1", "localhost"}
    text = result.to_json() + str(result)
    assert not any(secret in text for secret in ("p%40ss", "p@ss", "pw", "us%40er"))


def test_two_passwords_for_one_origin_are_refused():
    with pytest.raises(ValueError, match="two different"):
        parpy.crawl(["http://a:1@127.0.0.1:9/", "http://a:2@127.0.0.1:9/x"])


# ---- arguments refused before anything is fetched -------------------------------

BAD_TIMEOUTS = {
    "nan": (math.nan, ValueError), "inf": (math.inf, ValueError), "-inf": (-math.inf, ValueError),
    "1e300": (1e300, ValueError), "10**30": (10**30, ValueError),
    "10**400": (10**400, ValueError), "a day and a half second": (86400.5, ValueError),
    "0": (0, ValueError), "-1": (-1, ValueError), "True": (True, TypeError),
    "'1'": ("1", TypeError), "None": (None, TypeError), "Decimal": (Decimal("1"), TypeError),
}  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize("crawl", [parpy.crawl, parpy.reference.crawl], ids=["parpy", "reference"])
@pytest.mark.parametrize("case", BAD_TIMEOUTS)
def test_timeout_is_refused_unless_finite_and_at_most_a_day(serve, crawl, case):
    timeout, error = BAD_TIMEOUTS[case]
    server = serve({"/": page()})
    with pytest.raises(error, match="timeout"):
        crawl(server.url("/"), timeout=timeout)
    assert not server.requests


@pytest.mark.timeout(60)
@pytest.mark.parametrize("crawl", [parpy.crawl, parpy.reference.crawl], ids=["parpy", "reference"])
def test_a_day_is_the_longest_timeout(serve, crawl):
    server = serve({"/": page()})
    assert crawl(server.url("/"), timeout=86400)[server.url("/")].error is None


@pytest.mark.parametrize("agent", ["parpy\r\nX-Evil: 1", "parpy-\u20ac", "tab\there"])
def test_a_user_agent_that_is_not_a_header_value_is_refused(agent):
    with pytest.raises(ValueError, match="user_agent"):
        parpy.crawl("http://127.0.0.1:9/", user_agent=agent)


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..example"])
def test_a_host_no_lookup_can_take_is_malformed(host):
    with pytest.raises(ValueError, match="no valid host"):
        parpy.crawl(f"http://{host}/")
    assert parpy.crawler.normalize(f"http://{'a' * 63}.example/") == f"http://{'a' * 63}.example/"

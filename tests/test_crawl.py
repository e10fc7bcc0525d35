"""parpy.crawl against a generated site served by the tests on 127.0.0.1.

Two servers: host A (127.0.0.1, the site) and host B (localhost on another
port, a second host for same_host). Each counts the requests per path, the
User-Agents and the most requests in flight at once under /cap/. No test
touches an address outside loopback (the DNS failure is a patched resolver).
"""

from __future__ import annotations

import _thread
import io
import json
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _util import child_env

import parpy
import parpy.reference

SLOW = 2.0  # seconds /slow sleeps, over the crawls' timeout
TIMEOUT = 1.0
CAP_SLEEP = 0.2
MAX_BYTES = 64 * 1024
HUGE = 200_000


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # the listen backlog: more than the crawls' workers

    def __init__(self, host: str, pages: dict[str, tuple[int, dict[str, str], bytes]]):
        super().__init__((host, 0), Handler)
        self.name = f"{host}:{self.server_address[1]}"
        self.pages = pages
        self.hits: Counter[str] = Counter()
        self.agents: set[str] = set()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):
        server = self.server
        path = self.path
        with server.lock:
            server.hits[path] += 1
            server.agents.add(self.headers.get("User-Agent", ""))
        if path.startswith("/cap/"):
            with server.lock:
                server.in_flight += 1
                server.most_in_flight = max(server.most_in_flight, server.in_flight)
            time.sleep(CAP_SLEEP)
            with server.lock:
                server.in_flight -= 1
        if path.startswith("/slow"):
            time.sleep(SLOW)
        status, headers, body = server.pages.get(path, (404, {}, b"not found"))
        try:
            self.send_response(status)
            headers = {"Content-Type": "text/html; charset=utf-8", **headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout, body cut at max_bytes)


def html(*hrefs: str, head: str = "") -> tuple[int, dict[str, str], bytes]:
    links = "".join(f'<p><a class="x" href="{h}">link</a></p>\n' for h in hrefs)
    return 200, {}, f"<!doctype html><html><head>{head}</head><body>{links}</body></html>".encode()


def redirect(to: str) -> tuple[int, dict[str, str], bytes]:
    return 302, {"Location": to}, b""


def site(a: str, b: str) -> dict[str, tuple[int, dict[str, str], bytes]]:
    """Host A's pages; a and b are the two hosts' "host:port"."""
    huge = f'<a href="/fromhuge">x</a>{"x" * HUGE}<a href="/beyond">y</a>'.encode()
    return {
        "/robots.txt": (
            200,
            {"Content-Type": "text/plain"},
            b"User-agent: *\nDisallow: /private/\n",
        ),
        "/": html(
            "a",  # relative
            f"http://{a.upper()}/b#top",  # absolute, upper-case host, fragment
            f"http://{a}/a#again",  # a fragment of a page already linked
            "/missing",  # 404
            "/error",  # 500
            "/redirect",  # -> /c
            "/loop1",  # /loop1 -> /loop2 -> /loop1 ...
            "/file.bin",  # not HTML
            "/huge",  # over max_bytes
            "/private/secret",  # robots.txt says no
            "/slow",  # over the timeout
            "/redirect-out",  # -> the other host: not followed (same_host)
            "/redirect-private",  # -> /private/other: not followed (robots.txt)
            "/redirect-dup",  # -> /a, crawled as a URL of its own: not followed
            f"http://{b}/",  # the other host
            "http://[bad",  # malformed: bad IPv6 literal
            f"http://{a.split(':')[0]}:99999/",  # malformed: port out of range
            "mailto:someone@example.org",  # not http: ignored
        ),
        "/a": html("/", "sub/d"),  # a cycle back to /
        "/b": html("a", "./a"),
        "/redirect": redirect("/c"),
        "/error": (500, {}, b"<a href='/never'>the server failed</a>"),
        "/c": html("e"),
        "/loop1": redirect("/loop2"),
        "/loop2": redirect("/loop1"),
        "/redirect-out": redirect(f"http://{b}/"),
        "/redirect-private": redirect("/private/other"),
        "/redirect-dup": redirect(f"http://{a}/a"),
        "/file.bin": (200, {"Content-Type": "application/octet-stream"}, b'<a href="/no">'),
        "/huge": (200, {}, huge),
        "/private/secret": html("/never"),
        "/slow": html("/never"),
        "/sub/d": html("f", head='<base href="/base/">'),  # -> /base/f
        "/base/f": html(),
        "/e": html(),
        "/fromhuge": html(),
        **{f"/cap/{i}": html() for i in range(6)},
    }


@pytest.fixture
def hosts():
    other = Server("localhost", {"/": html("/other"), "/other": html()})
    main = Server("127.0.0.1", {})
    main.pages = site(main.name, other.name)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        for s in (main, other)
    ]
    for t in threads:
        t.start()
    yield main, other
    for s in (main, other):
        s.shutdown()
        s.server_close()
    for t in threads:
        t.join(timeout=5)


def reachable(a: str) -> set[str]:
    paths = ["/", "/a", "/b", "/missing", "/error", "/redirect", "/loop1", "/file.bin", "/huge"]
    paths += ["/private/secret", "/slow", "/sub/d", "/e", "/fromhuge", "/base/f"]
    paths += ["/redirect-out", "/redirect-private", "/redirect-dup"]
    return {f"http://{a}{p}" for p in paths}


BACKENDS = ["native", "threading", "multiprocessing"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_crawl_finds_the_reachable_set_and_records_each_failure(hosts, backend):
    main, other = hosts
    a = main.name
    result = parpy.crawl(
        f"http://{a}/", depth=3, timeout=TIMEOUT, max_bytes=MAX_BYTES, backend=backend
    )
    assert set(result.urls()) == reachable(a)
    assert len(result) == len(reachable(a))
    # same_host: the other host is never asked for anything.
    assert not other.hits
    # Each URL fetched once, redirects included; robots.txt once per host,
    # also when worker processes fetch.
    assert set(main.hits.values()) == {1}
    assert "/private/secret" not in main.hits and "/private/other" not in main.hits
    assert "/beyond" not in main.hits and "/no" not in main.hits and "/never" not in main.hits
    assert all(agent.startswith("parpy") for agent in main.agents)

    page = result[f"http://{a}/"]
    assert page.status == 200 and page.error is None and page.depth == 0
    assert page.content_type == "text/html" and page.bytes > 0 and page.elapsed > 0
    assert page.links is not None
    assert page.links[:3] == (f"http://{a}/a", f"http://{a}/b", f"http://{a}/missing")
    assert f"http://{other.name}/" in page.links
    assert not any("mailto" in link for link in page.links)
    assert result.malformed == 2

    assert result[f"http://{a}/sub/d"].links == (f"http://{a}/base/f",)  # <base href>
    assert result[f"http://{a}/base/f"].depth == 3
    assert result[f"http://{a}/missing"].status == 404
    assert result[f"http://{a}/missing"].error.startswith("http: 404")
    assert result[f"http://{a}/error"].error == "http: 500 Internal Server Error"
    moved = result[f"http://{a}/redirect"]
    assert moved.status == 200 and moved.final_url == f"http://{a}/c"
    assert moved.links == (f"http://{a}/e",)  # resolved against the final URL
    loop = result[f"http://{a}/loop1"]
    assert loop.error == f"redirect-loop: http://{a}/loop1 -> http://{a}/loop2 -> http://{a}/loop1"
    assert loop.status == 302
    out = result[f"http://{a}/redirect-out"]
    assert out.status == 302 and out.final_url == f"http://{other.name}/"
    assert out.error.startswith("offsite") and out.links is None
    private = result[f"http://{a}/redirect-private"]
    assert private.status == 302 and private.error.startswith("robots")
    dup = result[f"http://{a}/redirect-dup"]  # /a is crawled under its own URL
    assert (dup.status, dup.final_url, dup.error, dup.links) == (302, f"http://{a}/a", None, None)
    binary = result[f"http://{a}/file.bin"]
    assert binary.content_type == "application/octet-stream" and binary.links is None
    assert binary.error is None
    huge = result[f"http://{a}/huge"]
    assert huge.truncated and huge.bytes == MAX_BYTES and huge.links == (f"http://{a}/fromhuge",)
    assert result[f"http://{a}/private/secret"].error.startswith("robots")
    assert result[f"http://{a}/slow"].error.startswith("timeout")
    failed = ("/missing", "/error", "/loop1", "/private/secret", "/slow", "/redirect-out")
    assert set(result.errors) == {f"http://{a}{p}" for p in (*failed, "/redirect-private")}


def test_same_host_false_follows_the_other_host(hosts):
    main, other = hosts
    result = parpy.crawl(
        f"http://{main.name}/", depth=1, same_host=False, timeout=TIMEOUT, max_bytes=MAX_BYTES
    )
    assert result[f"http://{other.name}/"].links == (f"http://{other.name}/other",)
    assert other.hits["/"] == 1 and other.hits["/robots.txt"] == 1
    assert "/other" not in other.hits  # depth 1


def test_depth_zero_max_pages_and_dedup_of_start_urls(hosts):
    main, _ = hosts
    a = main.name
    result = parpy.crawl([f"http://{a}/a", f"HTTP://{a.upper()}/a#x"], timeout=TIMEOUT)
    assert result.urls() == [f"http://{a}/a"]
    result = parpy.crawl(f"http://{a}/a", depth=5, max_pages=3, timeout=TIMEOUT)
    assert len(result) == 3


def test_connection_failures_are_recorded(hosts, monkeypatch):
    main, _ = hosts
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again: nothing listens there
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    urls = [f"http://127.0.0.1:{dead}/", "http://no-such-host.invalid/", f"http://{main.name}/e"]
    result = parpy.crawl(urls, timeout=TIMEOUT)
    assert result[urls[0]].error.startswith("refused")
    assert result[urls[1]].error.startswith("dns")
    assert result[urls[2]].error is None


def test_result_is_json_a_table_and_a_mapping(hosts):
    main, _ = hosts
    result = parpy.crawl(f"http://{main.name}/a", depth=1, timeout=TIMEOUT)
    data = json.loads(result.to_json())
    assert {p["url"] for p in data["pages"]} == set(result.urls())
    assert [p.url for p in result] == result.urls()
    assert result.get("http://nowhere.invalid/") is None
    assert "<table>" in result._repr_html_() and "sub/d" in str(result)
    assert len(result.stats) == 2 and result.stats[0].stages[0].name == "fetch"


def test_a_result_pickles_by_its_public_names_and_loads_in_another_process(hosts):
    main, _ = hosts
    result = parpy.crawl(f"http://{main.name}/a", depth=1, timeout=TIMEOUT)
    data = pickle.dumps(result)
    names = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            names.add((module, name))
            return super().find_class(module, name)

    copy = Recording(io.BytesIO(data)).load()
    # Named by their public module, so that the pickle does not depend on a private one.
    assert {("parpy.crawler.result", "CrawlResult"), ("parpy.crawler.result", "Page")} <= names
    assert type(copy) is parpy.CrawlResult and all(type(p) is parpy.crawler.Page for p in copy)
    assert copy.as_dict() == result.as_dict() and copy.malformed == result.malformed
    code = "import pickle, sys\nprint(pickle.loads(sys.stdin.buffer.read()).to_json())"
    child = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, timeout=60, env=child_env()
    )
    assert child.returncode == 0, child.stderr.decode()
    assert json.loads(child.stdout) == result.as_dict()


def test_reference_crawler_finds_what_it_can(hosts):
    main, other = hosts
    a = main.name
    result = parpy.reference.crawl(f"http://{a}/", depth=3, timeout=TIMEOUT, max_bytes=MAX_BYTES)
    # No robots.txt, no <base href>: /private/secret and its link fetched, and
    # /sub/f instead of /base/f.
    expected = reachable(a) - {f"http://{a}/base/f"} | {f"http://{a}/sub/f", f"http://{a}/never"}
    assert set(result.urls()) == expected
    assert "/robots.txt" not in main.hits
    assert set(other.hits) == {"/"}  # urllib follows /redirect-out off the start host
    assert result[f"http://{a}/missing"].status == 404
    assert result[f"http://{a}/huge"].truncated
    assert result.malformed == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_stops_the_fetches_in_flight_and_raises_with_what_was_fetched(hosts, backend):
    main, _ = hosts
    # /start (depth 0, in the result before depth 1 begins) links four
    # /slow pages (SLOW seconds each) and /a.
    main.pages["/start"] = html(*(f"/slow?{i}" for i in range(4)), "/a")
    main.pages.update({f"/slow?{i}": html() for i in range(4)})
    start, a = f"http://{main.name}/start", f"http://{main.name}/a"
    # Interrupted once the four fetches of /slow (SLOW seconds each) are in
    # flight (per_host=4: /a may wait for a slot meanwhile).
    interrupted_at = []

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while sum(main.hits[f"/slow?{i}"] for i in range(4)) < 4:
            if time.monotonic() > deadline:
                return  # (the crawl then ends without KeyboardInterrupt: the test fails)
            time.sleep(0.01)
        interrupted_at.append(time.perf_counter())
        _thread.interrupt_main()

    timer = threading.Thread(target=interrupt, daemon=True)
    timer.start()
    with pytest.raises(KeyboardInterrupt) as caught:
        parpy.crawl(start, depth=1, timeout=10.0, per_host=4, backend=backend)
    took = time.perf_counter() - interrupted_at[0]
    timer.join(timeout=5)
    # Within a fraction of a second of the interrupt: not at SLOW, nor at the
    # timeout. (Worker processes are given GRACE = 0.5 s, then ended: 1.03 s was
    # seen under ASan on a loaded machine.)
    assert took < (1.5 if backend == "multiprocessing" else 0.5), took
    result = caught.value.result
    assert result.interrupted and start in result
    assert set(result.urls()) <= {start, a}  # none of the /slow pages
    assert "interrupted" in caught.value.__notes__[0]
    assert parpy.crawl(a, timeout=TIMEOUT, backend=backend)[a].error is None
    assert not [t for t in threading.enumerate() if t.name.startswith("parpy-pipeline")]


def forked_crawls(a: str, slow: str) -> str:
    """What a child forked during a crawl does: Ctrl-C, a crawl, a crawl
    that Ctrl-C ends. "ok", or what went wrong."""
    try:
        signal.raise_signal(signal.SIGINT)  # the handler of the parent's crawl
    except KeyboardInterrupt:
        pass
    else:
        return "no KeyboardInterrupt"
    page = parpy.crawl(a, timeout=TIMEOUT)[a]
    if page.error is not None:
        return f"crawl: {page.error}"
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    began = time.monotonic()
    try:
        parpy.crawl(slow, timeout=10.0)
    except KeyboardInterrupt as exc:
        if not exc.result.interrupted or time.monotonic() - began > 0.5 + SLOW / 2:
            return "Ctrl-C: too late"
    else:
        return "Ctrl-C: no KeyboardInterrupt"
    timer.join(timeout=5)
    return "ok"


def wait_child(pid: int, report: int, timeout: float) -> tuple[int | None, str]:
    """(exit status or None if it was still running at timeout, then killed; its report)."""
    deadline = time.monotonic() + timeout
    data = b""
    with os.fdopen(report, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline:
            if select.select([pipe], [], [], 0.05)[0]:
                chunk = pipe.read(4096)
                if not chunk:
                    break
                data += chunk
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), data.decode()
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None, data.decode()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.unsafe_under(
    "address",
    reason="GCC's ASan allocator takes no lock around fork(): a child forked while a parent "
    "thread holds it blocks in malloc (see test_threads.py)",
)
def test_a_child_forked_during_a_crawl_crawls_alone_and_leaves_the_parents_fetches(hosts):
    main, _ = hosts
    # Forked while the four /slow fetches are in flight: the child shares
    # their sockets and inherits the crawl's SIGINT handler and locks.
    main.pages["/start"] = html(*(f"/slow?{i}" for i in range(4)))
    main.pages.update({f"/slow?{i}": html() for i in range(5)})
    start, a, slow = (f"http://{main.name}{p}" for p in ("/start", "/a", "/slow?4"))
    forked: list[tuple[int, int]] = []

    def fork_when_in_flight() -> None:
        deadline = time.monotonic() + 30
        while sum(main.hits[f"/slow?{i}"] for i in range(4)) < 4:
            if time.monotonic() > deadline:
                return  # (no child: the test fails)
            time.sleep(0.01)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                report = forked_crawls(a, slow)
            except BaseException:
                report = traceback.format_exc()
            os.write(write, report.encode())
            os._exit(0 if report == "ok" else 1)
        os.close(write)
        forked.append((pid, read))

    forker = threading.Thread(target=fork_when_in_flight, daemon=True)
    forker.start()
    result = parpy.crawl(start, depth=1, timeout=10.0, per_host=4)
    forker.join(timeout=30)
    assert forked, "the crawl ended before the fork"
    status, report = wait_child(*forked[0], timeout=60)
    assert (status, report) == (0, "ok")
    # The child's Ctrl-C cancelled nothing of the parent's.
    assert [result[f"http://{main.name}/slow?{i}"].error for i in range(4)] == [None] * 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_host_cap_holds_across_workers_and_processes(hosts, backend):
    main, _ = hosts
    urls = [f"http://{main.name}/cap/{i}" for i in range(6)]
    result = parpy.crawl(urls, workers=6, per_host=2, timeout=5.0, backend=backend)
    assert [p.status for p in result] == [200] * 6
    assert main.most_in_flight == 2
    assert main.hits["/robots.txt"] == 1


def test_progress_bar_counts_the_pages(hosts, capsys):
    pytest.importorskip("tqdm")
    main, _ = hosts
    result = parpy.crawl(f"http://{main.name}/a", depth=2, timeout=TIMEOUT, progress=True)
    err = capsys.readouterr().err
    assert f"{len(result)}/{len(result)}" in err and "crawl" in err and "depth 2" in err


def test_bad_arguments():
    with pytest.raises(ValueError):
        parpy.crawl("ftp://127.0.0.1/")
    with pytest.raises(TypeError):
        parpy.crawl("http://127.0.0.1/", depth=1.5)
    with pytest.raises(ValueError):
        parpy.crawl("http://127.0.0.1/", timeout=0)
    with pytest.raises(ValueError):
        parpy.crawl("http://127.0.0.1/", backend="dask")

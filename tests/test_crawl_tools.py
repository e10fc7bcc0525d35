"""The tools around parpy.crawl: the generated site (parpy.crawler.Site), the
"crawl" workload of parpy.compare, and python -m parpy crawl.

Every site here is served on 127.0.0.1 by a child process of the test; no
test touches another address. Fetches, child processes and subprocesses all
have timeouts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import urllib.robotparser
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest
from _util import REPO, child_env

import parpy
from parpy import comparison
from parpy.crawler import USER_AGENT, Site, normalize
from parpy.crawler import site as _site
from parpy.reference import links as _links

TIMEOUT = 10.0  # seconds for any one fetch
PAGES, LINKS, SIZE = 20, 6, 8 * 1024


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, an HTTP error status included."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get_content_type(), exc.read()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parpy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=REPO,
    )


def gone(pid: int, deadline: float = 10.0) -> bool:
    """True once no process has this id (it ended and was reaped)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def site():
    with Site(pages=PAGES, delay=0.01, links=LINKS, size=SIZE, seed=5) as site:
        yield site


# ---- the site --------------------------------------------------------------------


def test_the_index_links_every_page_and_urls_are_normalised(site):
    assert urlsplit(site.url).hostname == "127.0.0.1"
    assert site.url == normalize(site.url) and site.url.endswith("/")
    assert site.urls() == [f"{site.url}p/{i}.html" for i in range(PAGES)]
    assert site.urls() == [normalize(u) for u in site.urls()]
    status, kind, body = get(site.url)
    assert (status, kind) == (200, "text/html")
    assert parpy.extract_links(body, site.url) == site.urls()


def test_a_page_comes_after_the_delay_with_its_links():
    with Site(pages=10, delay=0.5, links=7, size=4096, seed=1) as slow:
        page = slow.url + "p/3.html"
        start = time.perf_counter()
        status, kind, body = get(page)
        assert time.perf_counter() - start >= 0.5
        assert (status, kind) == (200, "text/html")
        assert 0.8 * 4096 <= len(body) <= 1.3 * 4096
        links = parpy.extract_links(body, page)
        assert len(links) == 7
        assert links == parpy.reference.extract_links(body, page)
        assert {normalize(link) for link in links} <= set(slow.urls())
        start = time.perf_counter()
        get(slow.url)
        get(slow.url + "robots.txt")
        assert time.perf_counter() - start < 0.5  # the index and robots.txt: at once


def test_pages_are_reproducible_from_the_seed():
    with Site(pages=8, delay=0, seed=1) as a, Site(pages=8, delay=0, seed=1) as b:
        with Site(pages=8, delay=0, seed=2) as c:
            pages = [[get(s.url + f"p/{i}.html")[2] for i in range(8)] for s in (a, b, c)]
    assert pages[0] == pages[1]
    assert pages[0] != pages[2]
    assert len(set(pages[0])) == 8  # each page its own


def test_pages_sizes_and_links_follow_the_arguments():
    with Site(pages=30, delay=0, links=25, size=64 * 1024) as big:
        for i in (0, 17, 29):
            _, _, body = get(big.url + f"p/{i}.html")
            assert 0.9 * 64 * 1024 <= len(body) <= 1.1 * 64 * 1024
            assert len(parpy.extract_links(body, big.url)) == 25
            for form in ('href="/p/', "href='/p/", "#part", 'href="./', 'class="next" href="'):
                assert form in body.decode(), form  # absolute paths, relative, fragments
    with Site(pages=3, delay=0, links=0, size=0) as tiny:
        _, _, body = get(tiny.url + "p/2.html")
        assert parpy.extract_links(body, tiny.url) == [] and len(body) < 300


def test_robots_txt_allows_everything_and_anything_else_is_404(site):
    status, kind, body = get(site.url + "robots.txt")
    assert (status, kind) == (200, "text/plain")
    rules = urllib.robotparser.RobotFileParser()
    rules.parse(body.decode().splitlines())
    assert rules.can_fetch(USER_AGENT, site.url + "p/1.html")
    assert rules.can_fetch("*", site.url + "anything")
    for path in ("nope", f"p/{PAGES}.html", "p/01.html", "p/-1.html", "p/"):
        assert get(site.url + path)[0] == 404, path
    assert get(site.url + "p/4.html?x=1#frag")[0] == 200


def test_requests_are_counted(site):
    before = site.requests()
    for i in range(5):
        get(site.url + f"p/{i}.html")
    get(site.url + "missing")
    assert site.requests() == before + 6


def test_it_listens_on_127_0_0_1_only(site):
    port = urlsplit(site.url).port
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass
    with pytest.raises(ConnectionRefusedError):  # another loopback address: nothing there
        socket.create_connection(("127.0.0.2", port), timeout=TIMEOUT).close()


def test_close_ends_the_child_and_is_idempotent():
    site = Site(pages=3, delay=0)
    assert not site.closed and "open" in repr(site)
    assert get(site.url)[0] == 200
    site.close()
    assert site.closed and "closed" in repr(site)
    assert gone(site.pid)
    assert site.pid not in [p.pid for p in multiprocessing.active_children()]
    with pytest.raises(urllib.error.URLError):
        get(site.url)
    site.close()  # again: nothing
    assert site.requests() == 1  # still readable


def test_an_unclosed_site_ends_its_child_when_collected():
    site = Site(pages=3, delay=0)
    pid = site.pid
    del site
    assert gone(pid)


def test_the_child_ends_when_its_parent_is_killed():
    code = (
        "import sys, time\nfrom parpy.crawler import Site\n"
        "if __name__ == '__main__':\n"
        "    site = Site(pages=2, delay=0)\n"
        "    print(site.pid, flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO
    )
    try:
        line = proc.stdout.readline()  # the child prints at once, or exits
        assert line.strip().isdigit(), line
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert gone(int(line))


def silent(*args):
    """A server that never reports its port."""
    time.sleep(60)


def failing(*args):
    """A server that exits at once."""
    sys.exit(3)


@pytest.mark.timeout(120)
def test_a_silent_server_is_an_error_after_the_timeout(monkeypatch):
    monkeypatch.setattr(_site, "_serve", silent)
    monkeypatch.setattr(_site, "START_TIMEOUT", 1.0)
    before = {p.pid for p in multiprocessing.active_children()}
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="did not report its port within 1 s"):
        Site(pages=2)
    assert time.monotonic() - start < 30
    assert {p.pid for p in multiprocessing.active_children()} <= before


@pytest.mark.timeout(120)
def test_a_server_that_dies_is_an_error(monkeypatch):
    monkeypatch.setattr(_site, "_serve", failing)
    with pytest.raises(RuntimeError, match=r"exited \(code 3\) before it reported its port"):
        Site(pages=2)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"pages": 0}, ValueError),
        ({"pages": 2.0}, TypeError),
        ({"links": -1}, ValueError),
        ({"size": True}, TypeError),
        ({"delay": -0.1}, ValueError),
        ({"delay": "1"}, ValueError),
    ],
)
def test_bad_arguments_start_nothing(kwargs, error):
    before = multiprocessing.active_children()
    with pytest.raises(error):
        Site(**kwargs)
    assert multiprocessing.active_children() == before


def test_every_page_is_crawled_from_the_root(site):
    result = parpy.crawl(site.url, depth=1, workers=4, per_host=4, timeout=TIMEOUT)
    assert set(result.urls()) == {site.url, *site.urls()}
    assert result.errors == {}
    assert all(len(page.links) <= LINKS for page in result if page.url != site.url)
    reference = parpy.reference.crawl(site.url, depth=1, workers=4, timeout=TIMEOUT)
    assert set(reference.urls()) == set(result.urls()) and reference.errors == {}
    for page in result:  # the regex finds what the native extractor finds
        assert set(reference[page.url].links) == set(page.links), page.url


# ---- compare("crawl") ------------------------------------------------------------------


def test_the_crawl_workload_serves_its_pages_for_the_run():
    workload = comparison.WORKLOADS["crawl"]
    paths = workload.items(5)
    assert paths == [f"/p/{i}.html" for i in range(5)] == workload.items(5)
    assert len(workload.items()) == workload.count
    assert "pages of a site on 127.0.0.1" in str(workload)
    with ExitStack() as stack:
        stages, urls = workload.serve(paths, stack)
        root = urls[0].removesuffix("p/0.html")
        assert urls == [root + path[1:] for path in paths]
        fetch, extract = stages
        assert fetch.func is _site.fetch
        assert extract.func.bound == (root,)
        body = fetch.func(urls[3])
        assert body == get(urls[3])[2]
        links = extract.func(body)
        assert len(links) == 8 and all(link.startswith(root) for link in links)
        assert links == parpy.reference.extract_links(body, root)
    with pytest.raises(urllib.error.URLError):  # the site is closed with the stack
        get(root)


@pytest.mark.timeout(240)
def test_compare_crawl_on_every_backend():
    before = {p.pid for p in multiprocessing.active_children()}
    workload = comparison.WORKLOADS["crawl"]
    report = parpy.compare(
        "crawl", workload.items(8), workers=[1, 4], repeat=1, warmup=0, progress=False
    )
    assert report.skipped == ()
    assert [(row.backend, row.workers) for row in report.rows] == [("serial", 1)] + [
        (name, w)
        for name in comparison.backend_names(None, None)[1:]  # (not Dask, pp, Celery)
        for w in (1, 4)
    ]
    assert report.items == 8 and report.meta["workload"] == "crawl"
    assert report.meta["python_runs"].startswith(
        "parpy.crawler.site.fetch -> parpy.reference.links.extract_links(x, 'http://127.0.0.1:"
    )
    assert "fetch -> extract" in report.work
    end = time.monotonic() + 10
    while {p.pid for p in multiprocessing.active_children()} - before:
        assert time.monotonic() < end, multiprocessing.active_children()  # the site, the pools
        time.sleep(0.05)


def test_compare_crawl_sweeps_its_own_worker_counts():
    report = parpy.compare(
        "crawl",
        comparison.WORKLOADS["crawl"].items(max(comparison.CRAWL_WORKERS)),  # a page per worker
        backends="parpy",
        repeat=1,
        warmup=0,
        progress=False,
    )
    assert [row.workers for row in report.rows] == [1, *comparison.CRAWL_WORKERS]


def dropping_last(html, base_url=None):
    """The twin, wrong: it loses each page's last link."""
    return _links.extract_links(html, base_url)[:-1]


def test_compare_crawl_checks_the_links(monkeypatch):
    monkeypatch.setattr(parpy.reference, "extract_links", dropping_last)
    with pytest.raises(parpy.MismatchError, match="parpy on 1 worker differs from serial"):
        parpy.compare(
            "crawl",
            comparison.WORKLOADS["crawl"].items(3),
            backends="parpy",
            workers=1,
            repeat=1,
            progress=False,
        )


# ---- python -m parpy crawl ---------------------------------------------------------------


def test_cli_crawl_json_lists_every_page(site):
    proc = run_cli("crawl", site.url, "--depth", "1", "--workers", "4", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the JSON only, no table
    pages = {page["url"]: page for page in data["pages"]}
    assert set(pages) == {site.url, *site.urls()}
    assert all(page["status"] == 200 and page["error"] is None for page in pages.values())
    assert pages[site.url]["links"] == site.urls()
    assert data["interrupted"] is False
    assert proc.stderr == ""  # no bar: stderr is not a terminal


def test_cli_crawl_prints_a_table_and_writes_json(site, tmp_path):
    out = tmp_path / "crawl.json"
    proc = run_cli(
        "crawl", site.url + "p/2.html", site.url + "missing", "--json", str(out), "--no-robots"
    )
    assert proc.returncode == 0, proc.stderr  # a failed page is data, not an error
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["url", "status"]
    assert lines[-1].startswith("crawl finished: 2 URLs, 1 failed")
    data = json.loads(out.read_text())
    errors = {page["url"]: page["error"] for page in data["pages"]}
    assert errors == {site.url + "p/2.html": None, site.url + "missing": "http: 404 Not Found"}
    assert f"wrote {out}" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["ftp://example.org/"], "only http and https"),
        (["http://"], "no valid host"),
        ([], "the following arguments are required: URL"),
        (["http://127.0.0.1:1/", "--depth", "-1"], "must be >= 0"),
        (["http://127.0.0.1:1/", "--workers", "0"], "must be >= 1"),
        (["http://127.0.0.1:1/", "--timeout", "0"], "must be > 0"),
        (["http://127.0.0.1:1/", "--timeout", "inf"], "must be > 0 and finite"),
        (["http://127.0.0.1:1/", "--backend", "dask"], "invalid choice"),
        (["http://127.0.0.1:1/", "--json", "/no/such/dir/out.json"], "no such directory"),
    ],
)
def test_cli_crawl_usage_errors_exit_2(args, message):
    proc = run_cli("crawl", *args)
    assert proc.returncode == 2, proc
    assert "usage:" in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_crawl_help():
    proc = run_cli("crawl", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--depth", "--per-host", "--max-pages", "--no-robots", "--json", "--backend"):
        assert option in proc.stdout
    assert "crawl" in run_cli("--help").stdout


@pytest.mark.timeout(120)
def test_cli_crawl_ctrl_c_prints_what_was_fetched():
    with Site(pages=40, delay=0.3) as slow:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parpy", "crawl", slow.url, "--depth", "1",
             "--workers", "1", "--per-host", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO,
        )  # fmt: skip
        try:
            end = time.monotonic() + 60
            while slow.requests() < 4:  # robots.txt, the index, pages 0 and 1
                assert time.monotonic() < end and proc.poll() is None
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert slow.url + "p/0.html" in out and slow.url + "p/30.html" not in out
    assert "crawl interrupted:" in out.splitlines()[-1]
    assert "interrupted" in err and "Traceback" not in err


# ---- python -m parpy compare crawl -------------------------------------------------------


@pytest.mark.timeout(240)
def test_cli_compare_crawl():
    proc = run_cli(
        "compare", "crawl", "--workers", "1,2", "--repeat", "1", "--warmup", "0",
        "--count", "20", "--backends", "threading,parpy",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("pipeline fetch -> extract over 20 items (I/O:")
    rows = [(name, workers.rstrip("*")) for name, workers, *_ in map(str.split, lines[3:8])]
    assert rows == [("serial", "1"), ("threading", "1"), ("threading", "2"),
                    ("parpy", "1"), ("parpy", "2")]  # fmt: skip
    assert "crawl:" in run_cli("compare", "--help").stdout

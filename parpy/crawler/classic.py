"""The crawler as the classic material writes it: breadth first, each level's
pages fetched by a ThreadPoolExecutor with urllib.request, and the links taken
with the classic regular expression and urljoin.

It keeps what the material keeps (a timeout, a size cap, depth, each URL once,
the start hosts only, every failure recorded on its URL) and leaves out what
it leaves out (robots.txt, per-host caps, <base href>, redirect loop
detection beyond urllib's own). It returns the same
:class:`parpy.CrawlResult` as :func:`parpy.crawl`.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin, urlsplit

from parpy.crawler._crawl import _timeout
from parpy.crawler._fetch import MAX_BYTES, USER_AGENT
from parpy.crawler._urls import normalize
from parpy.crawler.result import CrawlResult, Page

__all__ = ["crawl"]

LINK_RE = re.compile(r'<a\s(?:.*?\s)*?href=[\'"](.*?)[\'"].*?>')


def crawl(
    urls: str | Iterable[str],
    *,
    depth: int = 0,
    workers: int = 8,
    same_host: bool = True,
    timeout: float = 10.0,
    max_pages: int | None = None,
    max_bytes: int = MAX_BYTES,
    user_agent: str = USER_AGENT,
) -> CrawlResult:
    """Fetch urls and the pages they link to, up to depth links away.

    The twin of :func:`parpy.crawl`, as the classic material writes it.

    Parameters
    ----------
    urls : str or iterable of str
        The start URLs; those not http(s) are left out.
    depth : int, default 0
        How many links away from a start URL to go.
    workers : int, default 8
        The ThreadPoolExecutor's workers.
    same_host : bool, default True
        Crawl only the start URLs' hosts.
    timeout : float, default 10.0
        Seconds that bound each socket operation, at most a day.
    max_pages : int, optional
        The most URLs fetched; by default no limit.
    max_bytes : int, default 8 MiB
        The most bytes kept of a page; a longer page is cut and marked.
    user_agent : str, default "parpy-crawl/0.1.0 (Python-urllib)"
        The User-Agent header.

    Returns
    -------
    CrawlResult
        A :class:`~parpy.crawler.Page` for every URL fetched.

    Raises
    ------
    TypeError
        If ``timeout`` is not a number.
    ValueError
        If ``timeout`` is out of range, or a start URL is malformed.
    """
    timeout = _timeout(timeout)
    keys = [normalize(u) for u in ([urls] if isinstance(urls, str) else urls)]
    level = [u for u in dict.fromkeys(keys) if u is not None]
    hosts = {urlsplit(u).netloc for u in level}
    seen = set(level)
    result = CrawlResult()
    began = time.perf_counter()

    def fetch(url: str, level_depth: int) -> tuple[Page, int]:
        start = time.perf_counter()
        request = urllib.request.Request(url, headers={"User-Agent": user_agent})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read(max_bytes + 1)
                final = response.geturl()
                content_type = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            exc.close()
            return Page(url, exc.url, exc.code, None, 0, time.perf_counter() - start, None,
                        level_depth, error=f"http: {exc.code} {exc.reason}"), 0  # fmt: skip
        except Exception as exc:  # http.client's errors too: recorded, as every failure
            return Page(url, None, None, None, 0, time.perf_counter() - start, None,
                        level_depth, error=f"connection: {exc}"), 0  # fmt: skip
        links, malformed = None, 0
        if content_type == "text/html":
            text = body[:max_bytes].decode("utf-8", "replace")
            links = []
            for link in LINK_RE.findall(text):
                try:
                    key = normalize(urljoin(final, link))
                except ValueError:
                    malformed += 1
                    continue
                if key is not None and key not in links:
                    links.append(key)
        return Page(url, final, response.status, content_type, min(len(body), max_bytes),
                    time.perf_counter() - start, None if links is None else tuple(links),
                    level_depth, len(body) > max_bytes), malformed  # fmt: skip

    with ThreadPoolExecutor(max_workers=workers) as executor:
        for level_depth in range(depth + 1):
            if max_pages is not None:
                level = level[: max(0, max_pages - len(result))]
            following = []
            for page, malformed in executor.map(fetch, level, [level_depth] * len(level)):
                result._add(page)
                result.malformed += malformed
                for link in page.links or ():
                    if link not in seen and (not same_host or urlsplit(link).netloc in hosts):
                        seen.add(link)
                        following.append(link)
            if level_depth == depth:
                break
            level = following
    result.elapsed = time.perf_counter() - began
    return result

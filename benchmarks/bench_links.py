"""Link extraction: parpy.extract_links against its pure-Python twin,
html.parser and selectolax (lexbor), and its regex mode against the classic
crawler's re.findall (and RE2, when installed), side by side in one run.

    python -m pytest benchmarks/bench_links.py --benchmark-only

The documents are ~1 MiB of real pages (html_corpus.py). Targets: parpy at
least 30x faster than the html.parser crawler and 2x faster than selectolax on
the corpus; 10x the input in about 10x the time (bench_links_linear_time
checks that with a generous bound).
"""

from __future__ import annotations

import re
import statistics
import time
from html.parser import HTMLParser

import pytest
from html_corpus import backtracking, corpus, slow_line
from selectolax.lexbor import LexborHTMLParser

import parpy
import parpy.reference

try:
    import re2
except ImportError:  # the RE2 comparisons are skipped
    re2 = None

CLASSIC = r'<a\s(?:.*?\s)*?href=[\'"](.*?)[\'"].*?>'
CLASSIC_RE = re.compile(CLASSIC)


class LinkCollector(HTMLParser):
    """The usual html.parser crawler: dict(attrs)["href"] of every <a>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href is not None:
                self.links.append(href)


def html_parser_links(doc: str) -> list[str]:
    collector = LinkCollector()
    collector.feed(doc)
    collector.close()
    return collector.links


def lexbor_links(doc: str) -> list[str]:
    return [node.attributes["href"] for node in LexborHTMLParser(doc).css("a[href]")]


DOC = corpus()
DOC_BYTES = DOC.encode()

EXTRACT = {
    "parpy.extract_links": lambda: parpy.extract_links(DOC),
    "parpy.extract_links-bytes": lambda: parpy.extract_links(DOC_BYTES),
    "parpy.reference.extract_links": lambda: parpy.reference.extract_links(DOC),
    "html.parser": lambda: html_parser_links(DOC),
    "selectolax": lambda: lexbor_links(DOC),
}


@pytest.mark.parametrize("name", list(EXTRACT))
def bench_extract(benchmark, name):
    benchmark.group = "extract-1MiB"
    links = benchmark(EXTRACT[name])
    assert len(links) > 1000


@pytest.mark.parametrize("scale", [1, 10])
def bench_extract_scale(benchmark, scale):
    benchmark.group = "extract-scale"
    doc = corpus(scale)
    benchmark.extra_info["MiB"] = len(doc) / (1 << 20)
    benchmark(parpy.extract_links, doc)


REGEX = {
    "parpy.extract_links-regex": lambda doc: parpy.extract_links(doc, mode="regex"),
    "re.findall": lambda doc: CLASSIC_RE.findall(doc),
}
if re2 is not None:
    REGEX["re2.findall"] = lambda doc: re2.findall(CLASSIC, doc)
REGEX_DOCS = {"corpus": DOC, "slow-line": slow_line(18)}  # one line: more would never end


@pytest.mark.parametrize("doc", list(REGEX_DOCS))
@pytest.mark.parametrize("name", list(REGEX))
def bench_regex(benchmark, doc, name):
    benchmark.group = f"regex-{doc}"
    benchmark(REGEX[name], REGEX_DOCS[doc])


BACKTRACKING = {name: call for name, call in REGEX.items() if name != "re.findall"}


@pytest.mark.parametrize("name", list(BACKTRACKING))
def bench_regex_backtracking(benchmark, name):
    """re.findall would not finish here (hours): only parpy and RE2 are timed."""
    benchmark.group = "regex-backtracking"
    assert benchmark(BACKTRACKING[name], backtracking() * 1000) == []


# ---- linear time ---------------------------------------------------------------


def _median_time(fn, arg, rounds=5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


LINEAR = {
    "corpus": (corpus(1), corpus(10)),
    "open-tag": (b"<a " + b" " * (1 << 20), b"<a " + b" " * (10 << 20)),
    "nested-a": (b"<a" * (1 << 19), b"<a" * (10 << 19)),
    "amp-storm": (b'<a href="' + b"&am" * (1 << 18), b'<a href="' + b"&am" * (10 << 18)),
    "open-comment": (b"<!--" + b"-!" * (1 << 19), b"<!--" + b"-!" * (10 << 19)),
    # Every word a candidate whose quote is the next word's: the lookups must resume.
    "regex-hrefs": (b"<a" + b' href="x' * (1 << 17), b"<a" + b' href="x' * (10 << 17)),
}


@pytest.mark.parametrize("name", list(LINEAR))
def bench_links_linear_time(benchmark, name):
    """10x the input must take about 10x the time: fails above 25x (a noisy machine)."""
    benchmark.group = "linear-time"
    small, large = LINEAR[name]
    mode = "regex" if name.startswith("regex") else "html"

    def ratio():
        extract = lambda doc: parpy.extract_links(doc, mode=mode)  # noqa: E731
        return _median_time(extract, large) / _median_time(extract, small)

    result = benchmark.pedantic(ratio, rounds=1, iterations=1)
    benchmark.extra_info["10x/1x"] = round(result, 2)
    assert result < 25, f"{name}: 10x the input took {result:.1f}x the time"

"""Real-world HTML for the link-extraction benchmarks, made offline.

    corpus()          ~1 MiB: pydoc.HTMLDoc pages of standard-library modules, as
                      `python -m pydoc -w` writes them (tables, nested markup,
                      character references, hundreds of <a href> and <a name>
                      per page), concatenated.
    corpus(10)        the same, ten times over: the linear-time check.
    backtracking()    a short code listing that makes the classic crawler regex
                      backtrack for exponential time: "<a " and whitespace, but
                      no "href=" on the line; re.findall never finishes on it.
    slow_line(k)      one such line with k words: re.findall takes ~2**k steps
                      and still finishes for k up to ~20.

Reproducible: the same modules in the same order, the interpreter's own paths
replaced by a fixed one, so the corpus depends only on the Python version.
"""

from __future__ import annotations

import functools
import importlib
import os
import pydoc
import sys
import sysconfig

MIB = 1 << 20

# Large, link-rich modules first; the list is longer than 1 MiB needs.
MODULES = (
    "os", "typing", "decimal", "xml.dom.minidom", "http.client", "collections", "pathlib",
    "logging", "unittest.case", "threading", "urllib.parse", "email.message", "argparse",
    "re", "json", "datetime", "subprocess", "asyncio.tasks", "fractions", "html.parser",
    "shutil", "tarfile", "zipfile", "inspect", "dataclasses", "enum", "functools",
)  # fmt: skip


@functools.cache
def _page(name: str) -> str:
    module = importlib.import_module(name)
    page = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
    for path in {sysconfig.get_paths()["stdlib"], sys.prefix, os.path.dirname(os.__file__)}:
        page = page.replace(path, "/python")
    return page


@functools.cache
def corpus(scale: int = 1) -> str:
    """About scale MiB of pydoc pages: whole pages, up to the first that passes scale MiB."""
    pages: list[str] = []
    size = 0
    while size < scale * MIB:
        for name in MODULES:
            pages.append(_page(name))
            size += len(pages[-1])
            if size >= scale * MIB:
                break
    return "".join(pages)


LISTING = """\
static int
clamp_window(const struct window *w, int lo, int hi)
{
    int n = w->count, total = 0;
    for (int i = 0; i < n; i++) {
        if (w->items[i] <a && w->items[i] > lo) total += w->items[i] * hi - lo;
        else if (lo <a || hi > total + n) total -= w->items[i] / (hi - lo + 1);
    }
    return total <a ? lo : hi;
}
"""


def backtracking() -> str:
    """A page whose code listing makes re.findall(classic) run for hours."""
    return "<html><body><p>Listing:</p><pre>" + LISTING + "</pre></body></html>"


def slow_line(words: int = 18) -> str:
    """One line where the classic regex tries about 2**words ways and fails.

    Only at the end of a document: the failing search runs to the end of the
    text, so the ways of every later line multiply in.
    """
    return "<p>see <a " + "word " * words + "for details</p>\n"

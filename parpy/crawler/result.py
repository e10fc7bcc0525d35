"""What a crawl returns: a :class:`Page` for each URL it took on, gathered in
a :class:`CrawlResult` (iterable, a mapping by normalised URL, JSON, a table).

Both are made by :func:`parpy.crawl` and by the classic crawler
(:func:`parpy.reference.crawl`), and travel between processes: a pickle names
them by this public module, ``parpy.crawler.result.Page``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple

from parpy._support.render import Table
from parpy.crawler._urls import normalize
from parpy.pipeline import PipelineStats

__all__ = ["CrawlResult", "Page"]


class Page(NamedTuple):
    """What the crawl learned about one URL.

    A page with an error is never parsed (``links`` None).

    Parameters
    ----------
    url : str
        The URL, normalised.
    final_url : str or None
        Where its redirects ended; None when no response came.
    status : int or None
        The HTTP status; None when no response came.
    content_type : str or None
        The response's media type, e.g. "text/html".
    bytes : int
        The bytes of the body read.
    elapsed : float
        Seconds its fetch took.
    links : tuple of str or None
        The page's links, resolved and normalised, in document order; None
        when the page was not parsed.
    depth : int
        Links away from a start URL.
    truncated : bool, default False
        The body was cut at max_bytes.
    error : str or None, default None
        A "kind: message" string, kind one of robots, offsite, dns, refused,
        timeout, tls, connection, http, http-protocol, incomplete, redirect,
        redirect-loop, cancelled, error.
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
        """Return the page as JSON values.

        Returns
        -------
        dict
            The fields by name, ``links`` a list.
        """
        row = self._asdict()
        row["links"] = None if self.links is None else list(self.links)
        return row


class CrawlResult:
    """The pages of a crawl, from :func:`parpy.crawl`.

    Iterable over :class:`Page` (in the order they were fetched), and a
    mapping by normalised URL (``result[url]``, ``url in result``,
    ``result.get(url)``, ``result.urls()``). ``malformed`` counts the links
    kept out of the frontier as malformed; ``interrupted`` says Ctrl-C ended
    it early; ``elapsed`` is the crawl's seconds; ``stats`` holds each
    level's :class:`~parpy.PipelineStats` (empty for the reference crawler).
    JSON through ``as_dict()``/``to_json()``; a table in Jupyter. Made empty
    by the crawler, which fills it.
    """

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
        """Return the page of url, or ``default``.

        Parameters
        ----------
        url : str
            The URL, normalised here as the crawl keys it.
        default : Page, optional
            What to return if the crawl did not take url on.

        Returns
        -------
        Page or None
            The page, or ``default``.
        """
        return self[url] if url in self else default

    def urls(self) -> list[str]:
        """Return the URLs of the pages, in the order fetched.

        Returns
        -------
        list of str
            The normalised URLs.
        """
        return list(self._pages)

    @property
    def errors(self) -> dict[str, str]:
        """URL -> error of every page that failed."""
        return {p.url: p.error for p in self if p.error is not None}

    def as_dict(self) -> dict[str, Any]:
        """Return the crawl as JSON values.

        Returns
        -------
        dict
            pages (each :meth:`Page.as_dict`), malformed, interrupted and
            elapsed.
        """
        return {
            "pages": [p.as_dict() for p in self],
            "malformed": self.malformed,
            "interrupted": self.interrupted,
            "elapsed": self.elapsed,
        }

    def to_json(self, **kwargs: Any) -> str:
        """Return :meth:`as_dict` as JSON text.

        Parameters
        ----------
        **kwargs : object
            Passed on to ``json.dumps`` (``indent=2``, ...).

        Returns
        -------
        str
            The JSON text.
        """
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

"""The crawler: parpy.crawl (fetch, then extract links, as a parpy pipeline,
level by level), its result types, the classic crawler that the material
writes (``classic``) and a website served on 127.0.0.1 to crawl (``site``)."""

from parpy.crawler._crawl import crawl
from parpy.crawler._fetch import MAX_BYTES, USER_AGENT
from parpy.crawler._urls import normalize
from parpy.crawler.result import CrawlResult, Page
from parpy.crawler.site import Site

__all__ = ["MAX_BYTES", "USER_AGENT", "CrawlResult", "Page", "Site", "crawl", "normalize"]

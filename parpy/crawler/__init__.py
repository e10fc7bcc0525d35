"""The crawler: parpy.crawl (fetch, then extract links, as a parpy pipeline,
level by level), its result types, the classic crawler that the material
writes (``classic``) and a website served on 127.0.0.1 to crawl (``site``)."""

from parpy.crawler._crawl import MAX_BYTES, USER_AGENT, CrawlResult, Page, crawl, normalize
from parpy.crawler.site import Site

__all__ = ["MAX_BYTES", "USER_AGENT", "CrawlResult", "Page", "Site", "crawl", "normalize"]

"""URLs as the crawl keys them: normalised, without their userinfo, whose
user and password become an ``Authorization: Basic`` header for their origin
(scheme, host, port) only."""

from __future__ import annotations

import base64
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize(url: str) -> str | None:
    """Return url as the crawl keys it.

    Scheme and host lower-cased, the userinfo (``user:password@``), the
    default port and the fragment dropped, an empty path made "/", unsafe
    characters percent-encoded as a browser does.

    Parameters
    ----------
    url : str
        The URL.

    Returns
    -------
    str or None
        The normalised URL; None for a scheme other than http(s).

    Raises
    ------
    ValueError
        If it is malformed: no host, a host no lookup can take, a bad port,
        a bad IPv6 literal.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None
    host = parts.hostname
    if not host or any(c <= " " or c in '<>"\\^`{|}\x7f' for c in host):
        raise ValueError(f"no valid host in {url!r}")
    try:
        host.encode("idna")  # as socket.getaddrinfo and http.client encode it
    except UnicodeError:
        raise ValueError(f"no valid host in {url!r}") from None
    port = parts.port  # ValueError when not a number in range
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    query = quote(parts.query, safe="/?%:@!$&'()*+,;=~")
    return urlunsplit((scheme, netloc, path, query, ""))


def _host(url: str) -> str:
    """The "host[:port]" of a normalised URL (which has no userinfo)."""
    return urlsplit(url).netloc


def _origin(url: str) -> str:
    """The "scheme://host[:port]" of a normalised URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _basic_auth(url: str) -> str | None:
    """The Authorization header that url's userinfo makes; None if it has none."""
    parts = urlsplit(url.strip())
    if parts.username is None:
        return None
    userinfo = unquote(parts.username) + ":" + unquote(parts.password or "")
    return "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")

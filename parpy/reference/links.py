"""The pure-Python twin of parpy.extract_links: the hrefs of <a> start tags.

A small tokenizer for exactly the part of the WHATWG HTML standard
("13.2.5 Tokenization") that decides where tags are and what their attribute
values are. Comments name the standard's states. What it leaves out:

- foreign content is not tracked: inside <svg> and <math> everything is parsed
  as HTML content, so "<![CDATA[" opens a bogus comment ending at the first ">"
  and <style>, <title>, ... switch to RAWTEXT/RCDATA as in HTML;
- the tree builder is not run; only its switches of the tokenizer's state after
  script, style, xmp, iframe, noembed, noframes, textarea, title and plaintext
  start tags are, as in the "in body" insertion mode. noscript is parsed as
  markup, as with scripting disabled.

mode="regex" is the classic crawler's regular expression, as it was written.
"""

from __future__ import annotations

import re
from html.entities import html5 as NAMED_REFERENCES
from urllib.parse import urljoin

__all__ = ["extract_links"]

CLASSIC_LINK_RE = re.compile(r'<a\s(?:.*?\s)*?href=[\'"](.*?)[\'"].*?>')

WHITESPACE = "\t\n\f "  # after preprocessing there is no CR
ASCII_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
ASCII_ALPHANUMERIC = ASCII_ALPHA | frozenset("0123456789")
LONGEST_REFERENCE = max(map(len, NAMED_REFERENCES))

# The tokenizer states the tree builder switches to after these start tags.
RCDATA = frozenset({"textarea", "title"})
RAWTEXT = frozenset({"style", "xmp", "iframe", "noembed", "noframes"})

# "Numeric character reference end state": 0x80-0x9F read as windows-1252.
C1_REPLACEMENTS = {
    0x80: 0x20AC, 0x82: 0x201A, 0x83: 0x0192, 0x84: 0x201E, 0x85: 0x2026, 0x86: 0x2020,
    0x87: 0x2021, 0x88: 0x02C6, 0x89: 0x2030, 0x8A: 0x0160, 0x8B: 0x2039, 0x8C: 0x0152,
    0x8E: 0x017D, 0x91: 0x2018, 0x92: 0x2019, 0x93: 0x201C, 0x94: 0x201D, 0x95: 0x2022,
    0x96: 0x2013, 0x97: 0x2014, 0x98: 0x02DC, 0x99: 0x2122, 0x9A: 0x0161, 0x9B: 0x203A,
    0x9C: 0x0153, 0x9E: 0x017E, 0x9F: 0x0178,
}  # fmt: skip


def extract_links(html: bytes | str, base_url: str | None = None, mode: str = "html") -> list[str]:
    """Return the href of every <a> start tag of html, in document order.

    The twin of :data:`parpy.extract_links`. With base_url and/or a <base
    href> in the document, every link is resolved with urljoin against
    urljoin(base_url, base href) (or whichever of the two there is).

    Parameters
    ----------
    html : bytes or str
        The document; bytes are decoded as UTF-8 with errors="replace".
    base_url : str, optional
        The URL the document came from.
    mode : {"html", "regex"}, default "html"
        "html" tokenizes as a browser does; "regex" returns what re.findall
        of the classic crawler's regex does, resolved against base_url only.

    Returns
    -------
    list of str
        The links, resolved when there is a base.

    Raises
    ------
    TypeError
        If html is not bytes or str, or base_url not a str or None.
    ValueError
        If mode is unknown.
    """
    if isinstance(html, bytes):
        text = html.decode("utf-8", "replace")
    elif isinstance(html, str):
        text = html
    else:
        raise TypeError(f"html must be bytes or str, not {type(html).__name__}")
    if base_url is not None and not isinstance(base_url, str):
        raise TypeError(f"base_url must be str or None, not {type(base_url).__name__}")
    if mode == "regex":
        links, base_href = CLASSIC_LINK_RE.findall(text), None
    elif mode == "html":
        links, base_href = scan(text)
    else:
        raise ValueError(f"mode must be 'html' or 'regex', not {mode!r}")
    base: str | None
    if base_url is not None and base_href is not None:
        base = urljoin(base_url, base_href)
    else:
        base = base_href if base_href is not None else base_url
    if base is None:
        return links
    return [urljoin(base, link) for link in links]


def scan(text: str) -> tuple[list[str], str | None]:
    """The hrefs of the <a> start tags of text, and the href of the first <base>
    start tag that has one (or None)."""
    # Preprocessing the input stream: CR LF and lone CR become LF.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    links: list[str] = []
    base = None
    pos = 0
    while True:
        # Data state: text up to "<".
        pos = text.find("<", pos) + 1
        if pos == 0 or pos == len(text):
            break
        # Tag open state.
        char = text[pos]
        if char in ASCII_ALPHA:
            tag = read_tag(text, pos)
            if tag is None:
                break  # EOF in tag: the tag is not emitted
            name, href, pos = tag
            if name == "a" and href is not None:
                links.append(href)
            elif name == "base" and href is not None and base is None:
                base = href
            # The tree builder switches the tokenizer's state after some start tags.
            if name == "script":
                pos = script_data(text, pos)
            elif name in RCDATA or name in RAWTEXT:
                pos = appropriate_end_tag(text, pos, name)
            elif name == "plaintext":
                break  # PLAINTEXT state: the rest is text
        elif char == "/":
            # End tag open state.
            if pos + 1 == len(text):
                break
            if text[pos + 1] in ASCII_ALPHA:
                tag = read_tag(text, pos + 1)
                if tag is None:
                    break
                pos = tag[2]
            elif text[pos + 1] == ">":
                pos += 2  # "</>": missing end tag name, nothing emitted
            else:
                pos = bogus_comment(text, pos + 1)
        elif char == "!":
            # Markup declaration open state.
            if text.startswith("--", pos + 1):
                pos = comment(text, pos + 3)
            else:
                # DOCTYPE (whose every state ends at ">"), "[CDATA[" in HTML
                # content and anything else are read up to the first ">".
                pos = bogus_comment(text, pos + 1)
        elif char == "?":
            pos = bogus_comment(text, pos)
        # Anything else: "<" was text; the character is reconsumed in the data state.
        if pos < 0:
            break
    return links, base


def read_tag(text: str, pos: int) -> tuple[str, str | None, int] | None:
    """Tokenizes the tag whose name starts at text[pos]: returns its name, its
    (first) href, and the position after its ">"; None if the input ends first."""
    n = len(text)
    # Tag name state.
    start = pos
    while pos < n and text[pos] not in WHITESPACE and text[pos] not in "/>":
        pos += 1
    name = ascii_lower(text[start:pos]).replace("\0", "\ufffd")
    attributes: dict[str, str] = {}
    state = "before attribute name"
    while pos < n:
        char = text[pos]
        if state == "before attribute name":
            if char in WHITESPACE:
                pos += 1
            elif char == "/":
                state = "self-closing start tag"
                pos += 1
            elif char == ">":
                return name, attributes.get("href"), pos + 1
            else:
                # Attribute name state; the first character is taken even if "=".
                start = pos
                pos += 1
                while pos < n and text[pos] not in WHITESPACE and text[pos] not in "/>=":
                    pos += 1
                attribute = ascii_lower(text[start:pos]).replace("\0", "\ufffd")
                # A duplicate attribute is dropped: the first one's value counts.
                duplicate = attribute in attributes
                if not duplicate:
                    attributes[attribute] = ""
                state = "after attribute name"
        elif state == "after attribute name":
            if char in WHITESPACE:
                pos += 1
            elif char == "=":
                state = "before attribute value"
                pos += 1
            else:
                state = "before attribute name"  # reconsume: "/", ">" or a new attribute
        elif state == "before attribute value":
            if char in WHITESPACE:
                pos += 1
            elif char == ">":
                return name, attributes.get("href"), pos + 1  # missing attribute value
            else:
                # Attribute value (double-quoted, single-quoted, unquoted) states.
                if char in "\"'":
                    end = text.find(char, pos + 1)
                    if end < 0:
                        return None
                    value, pos = text[pos + 1 : end], end + 1
                    # After attribute value (quoted) state: whitespace, "/", ">" and
                    # anything else all go on as in the before attribute name state.
                else:
                    end = pos
                    while end < n and text[end] not in WHITESPACE and text[end] != ">":
                        end += 1
                    value, pos = text[pos:end], end
                if not duplicate:
                    attributes[attribute] = decode_references(value.replace("\0", "\ufffd"))
                state = "before attribute name"
        elif state == "self-closing start tag":
            if char == ">":
                return name, attributes.get("href"), pos + 1
            state = "before attribute name"  # unexpected solidus: reconsume
    return None  # EOF in tag


def decode_references(value: str) -> str:
    """Character reference state, with an attribute value as its return state."""
    out = []
    pos = 0
    n = len(value)
    while True:
        amp = value.find("&", pos)
        if amp < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:amp])
        pos = amp + 1
        if pos < n and value[pos] in ASCII_ALPHANUMERIC:
            # Named character reference state: the longest name in the table.
            for length in range(min(LONGEST_REFERENCE, n - pos), 0, -1):
                name = value[pos : pos + length]
                if name in NAMED_REFERENCES:
                    break
            else:
                out.append("&")  # no match: ambiguous ampersand state, the text stays
                continue
            after = value[pos + length : pos + length + 1]
            if not name.endswith(";") and after and (after in ASCII_ALPHANUMERIC or after == "="):
                out.append("&" + name)  # historical: "&amp=" stays as written
            else:
                out.append(NAMED_REFERENCES[name])
            pos += length
        elif pos < n and value[pos] == "#":
            # Numeric character reference state.
            hexadecimal = value[pos + 1 : pos + 2] in ("x", "X")
            digits = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
            start = end = pos + 1 + hexadecimal
            while end < n and value[end] in digits:
                end += 1
            if end == start:
                out.append(value[amp:start])  # absence of digits: the text stays
                pos = start
                continue
            number = value[start:end].lstrip("0") or "0"
            # Anything over 8 digits is > 0x10FFFF (and int() of a long string is slow).
            code = int(number, 16 if hexadecimal else 10) if len(number) <= 8 else 0x110000
            pos = end + 1 if value[end : end + 1] == ";" else end
            # Numeric character reference end state.
            if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                code = 0xFFFD
            out.append(chr(C1_REPLACEMENTS.get(code, code)))
        else:
            out.append("&")  # not a character reference
    return "".join(out)


def comment(text: str, pos: int) -> int:
    """Comment start state, from just after "<!--": the position after the
    comment's end, or -1 if the input ends first."""
    # Comment start state: "<!-->"; comment start dash state: "<!--->".
    if text.startswith(">", pos):
        return pos + 1
    if text.startswith("->", pos):
        return pos + 2
    # Comment, comment end dash, comment end and comment end bang states: the
    # first "-->" or "--!>" ends it. (The comment less-than sign states only
    # change the comment's text.)
    state = "comment"
    while pos < len(text):
        char = text[pos]
        pos += 1
        if state == "comment":
            if char == "-":
                state = "comment end dash"
        elif state == "comment end dash":
            state = "comment end" if char == "-" else "comment"
        elif state == "comment end":
            if char == ">":
                return pos
            if char == "!":
                state = "comment end bang"
            elif char != "-":
                state = "comment"
        elif state == "comment end bang":
            if char == ">":
                return pos
            state = "comment end dash" if char == "-" else "comment"
    return -1


def bogus_comment(text: str, pos: int) -> int:
    """Bogus comment state: up to the first ">"."""
    end = text.find(">", pos)
    return end + 1 if end >= 0 else -1


def appropriate_end_tag(text: str, pos: int, name: str) -> int:
    """RCDATA and RAWTEXT states: the text ends at "</name" followed by
    whitespace, "/" or ">" (name in any ASCII case). Returns the position of its
    "<", which the data state then tokenizes as an end tag; len(text) if none."""
    end = re.compile(f"</{name}[{WHITESPACE}/>]", re.IGNORECASE | re.ASCII).search(text, pos)
    return end.start() if end else len(text)


def script_data(text: str, pos: int) -> int:
    """Script data state and its escaped and double-escaped states: the position
    of the "</script" that ends the script, or len(text)."""
    n = len(text)
    state = "script data"
    while pos < n:
        char = text[pos]
        if state == "script data":
            if char != "<":
                pos = text.find("<", pos)
                if pos < 0:
                    return n
                continue
            if is_script_end_tag(text, pos):
                return pos
            if text.startswith("<!--", pos):
                # Script data escape start, escape start dash states.
                state = "script data escaped dash dash"
                pos += 4
                continue
        elif state.startswith("script data escaped"):
            if char == "-":
                dashes = state == "script data escaped" and " dash" or " dash dash"
                state = "script data escaped" + dashes
            elif char == ">" and state == "script data escaped dash dash":
                state = "script data"
            else:
                state = "script data escaped"
                if char == "<":
                    # Script data escaped less-than sign state.
                    if is_script_end_tag(text, pos):
                        return pos
                    if text.startswith("</", pos):
                        pos += 2  # escaped end tag open, not "script": text
                        continue
                    if text[pos + 1 : pos + 2] in ASCII_ALPHA:
                        # Script data double escape start state.
                        pos, word, end = read_word(text, pos + 1)
                        if end:
                            state = "script data double escaped" if word == "script" else state
                            pos += 1
                        continue
        elif state.startswith("script data double escaped"):
            if char == "-":
                dashes = state == "script data double escaped" and " dash" or " dash dash"
                state = "script data double escaped" + dashes
            elif char == ">" and state == "script data double escaped dash dash":
                state = "script data"
            else:
                state = "script data double escaped"
                if text.startswith("</", pos):
                    # Double escaped less-than sign, script data double escape end states.
                    pos, word, end = read_word(text, pos + 2)
                    if end:
                        state = "script data escaped" if word == "script" else state
                        pos += 1
                    continue
        pos += 1
    return n


def is_script_end_tag(text: str, pos: int) -> bool:
    """Whether text[pos:] starts with the appropriate end tag of a script."""
    return (
        text.startswith("</", pos)
        and ascii_lower(text[pos + 2 : pos + 8]) == "script"
        and text[pos + 8 : pos + 9] in tuple(WHITESPACE + "/>")
    )


def read_word(text: str, pos: int) -> tuple[int, str, bool]:
    """ASCII letters from pos: the position after them, them lowercased, and
    whether whitespace, "/" or ">" follows."""
    start = pos
    while pos < len(text) and text[pos] in ASCII_ALPHA:
        pos += 1
    return pos, ascii_lower(text[start:pos]), text[pos : pos + 1] in tuple(WHITESPACE + "/>")


def ascii_lower(s: str) -> str:
    """Lowercases A-Z only, as the standard does (str.lower folds non-ASCII too)."""
    return s.translate(ASCII_LOWER)


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

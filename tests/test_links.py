"""parpy.extract_links: the hrefs of <a> start tags, as the WHATWG tokenizer sees them.

Checked against its pure-Python twin (parpy.reference.extract_links) on
generated and hostile inputs, against selectolax (lexbor, a browser-grade
parser) on documents where tokenization alone decides the answer, against
html.parser on ordinary documents, and in mode="regex" against the classic
crawler's re.findall.

Deliberate differences, by design (the README lists them):
- selectolax builds a tree: the adoption agency clones an <a> left open across
  a block (<p><a href=x>1<p>2 has two a[href] elements, one start tag);
  <a> inside <template> is not in its tree; a valueless href is None there,
  "" here; in <select>, <frameset>, <table> and foreign content (<svg>, <math>)
  the tree builder drops, moves or reinterprets tags. The generated documents
  below avoid all of these.
- Foreign content is not tracked here: in <svg>/<math>, <![CDATA[ is a bogus
  comment up to the first ">", and <style>/<title> there are raw text.
- html.parser (3.11) keeps every duplicate attribute (a dict of them keeps the
  last), parses textarea and title contents as markup, decodes "&ampx" in
  attribute values, and folds non-ASCII case; the standard wins here.
"""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

import parpy
import parpy.reference

CLASSIC = r'<a\s(?:.*?\s)*?href=[\'"](.*?)[\'"].*?>'
MB = 1 << 20


@pytest.fixture(
    params=[parpy.extract_links, parpy.reference.extract_links], ids=["native", "reference"]
)
def extract(request):
    return request.param


def native(html, base_url=None, mode="html"):
    return parpy.extract_links(html, base_url, mode=mode)


def twin(html, base_url=None, mode="html"):
    return parpy.reference.extract_links(html, base_url, mode=mode)


def lexbor_links(doc: str) -> list[str]:
    """What a browser's DOM holds: a[href] values ("" for a valueless href)."""
    return [node.attributes["href"] or "" for node in LexborHTMLParser(doc).css("a[href]")]


class LinkCollector(HTMLParser):
    """The usual html.parser crawler: dict(attrs)["href"] of every <a>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href", False)
            if href is not False:
                self.links.append(href or "")


def html_parser_links(doc: str) -> list[str]:
    collector = LinkCollector()
    collector.feed(doc)
    collector.close()
    return collector.links


# ---- document grammar ----------------------------------------------------------

REFERENCES = [
    "&amp;", "&amp", "&ampx", "&amp=", "&AMP;", "&lt", "&copy", "&copyx", "&notit;", "&notin;",
    "&not", "&NotNestedLessLess;", "&CounterClockwiseContourIntegral;", "&#65;", "&#65", "&#x41;",
    "&#X41", "&#x80;", "&#x9F;", "&#0;", "&#xD800;", "&#x110000;", "&#99999999999999;", "&#13;",
    "&#", "&#x", "&#xg", "&", "&&", "&;", "&zz;", "&ThickSpace;", "&nbsp", "&nbsp;x",
]  # fmt: skip
VALUE_CHARS = st.sampled_from(
    ["a", "b/", ":", "?q=1", "#f", ".", " ", "\t", "\n", "\r", "\r\n", "\0", "<", ">", "=",
     '"', "'", "`", "/", "é", "\u2028", "\xa0", "\U0001f600"] + REFERENCES
)  # fmt: skip
ATTR_NAMES = ["href", "HREF", "hReF", "class", "id", "x", '"', "'", "<a", "=", "hr\0ef", "href\0"]
TAG_NAMES = ["a", "A", "base", "div", "p", "span", "img", "br", "b", "i"]
RAW_TEXT = ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"]
SPACE = st.sampled_from([" ", "\t", "\n", "\r", "\r\n", "\f", "  "])


@st.composite
def attribute(draw, names=ATTR_NAMES, values=VALUE_CHARS):
    name = draw(st.sampled_from(names))
    form = draw(st.sampled_from(["valueless", "double", "single", "unquoted", "empty"]))
    value = "".join(draw(st.lists(values, max_size=6)))
    eq = draw(st.sampled_from(["=", " = ", "\n=\n"]))
    if form == "valueless":
        return name
    if form == "double":
        return f'{name}{eq}"{value.replace(chr(34), "")}"'
    if form == "single":
        return f"{name}{eq}'{value.replace(chr(39), '')}'"
    if form == "unquoted":  # (a value that starts with a quote is a quoted one)
        unquoted = "".join(c for c in value if c not in " \t\n\r\f>").lstrip("'\"")
        return name + eq + unquoted + "x"
    return f"{name}{eq}"


ANY_ATTRIBUTE = attribute()


@st.composite
def tag(draw, names=TAG_NAMES, attributes=ANY_ATTRIBUTE, ends=(">", "/>", " >", "", " /x>")):
    name = draw(st.sampled_from(names))
    attrs = draw(st.lists(attributes, max_size=4))
    gaps = [draw(SPACE) if draw(st.booleans()) else draw(st.sampled_from([" ", "/", ""]))
            for _ in attrs]  # fmt: skip
    end = draw(st.sampled_from(ends))
    slash = "/" if draw(st.integers(0, 5)) == 0 else ""
    return "<" + slash + name + "".join(g + a for g, a in zip(gaps, attrs, strict=True)) + end


def raw_text(draw_inner):
    @st.composite
    def build(draw):
        name = draw(st.sampled_from(RAW_TEXT))
        inner = draw(draw_inner)
        closer = draw(
            st.sampled_from(
                [f"</{name}>", f"</{name.upper()}>", f"</{name} >", f"</{name}/>",
                 f"</{name}x>", f"</{name}", "", f"</{name}\n title='>'>"]
            )
        )  # fmt: skip
        return f"<{name}>{inner}{closer}"

    return build()


PIECES = [
    "<!--", "-->", "--!>", "<!-->", "<!--->", "<!---->", "<!-- x -- y -->", "<!DOCTYPE html>",
    "<!doctype x 'y>z'>", "<?php echo '<a href=\"p\">' ?>", "<![CDATA[<a href=c>]]>", "</ x>",
    "</>", "</", "<", ">", "<<a", "<!", "<!-", "<a", "<a href", "=", "\"", "'", "&", "\0", "\r",
    "text ", "\n", "<script><!--<script></script><a href=s1></script>", "<script><!--</script>",
    "<script><!--<script>--></script>", "<plaintext>",
]  # fmt: skip
ANCHOR_ATTRIBUTES = attribute(names=["href", "HREF", "hReF", "href", "href", "x", "href\0", "'"])
ANCHOR = tag(names=["a", "A", "a", "base"], attributes=ANCHOR_ATTRIBUTES)
# An anchor whose start tag surely ends, so that the "</a>" after it is a tag: no
# attribute named "'" (after an empty value, "x= '" starts a quoted value that would run on).
ENDS = (">", "/>", " >", " /x>")  # every one ends the tag
CLOSED_ANCHOR = tag(
    names=["a", "A", "a", "base"],
    attributes=attribute(names=["href", "HREF", "hReF", "href", "href", "x", "href\0"]),
    ends=ENDS,
)


def soup(pieces=PIECES):
    """Anything goes: tags, broken tags, comments, raw text, references."""
    inner = st.lists(st.one_of(st.sampled_from(pieces), ANCHOR), max_size=4).map("".join)
    return st.lists(
        st.one_of(st.sampled_from(pieces), tag(), ANCHOR, ANCHOR, raw_text(inner), VALUE_CHARS),
        max_size=25,
    ).map("".join)


# Documents on which tokenization alone decides the DOM's a[href]: every <a>
# closed at once (no adoption-agency clones: an <a> left open is cloned into
# the next block), every tag ended (a tag cut short swallows what follows),
# no select/table/template/svg/math.
@st.composite
def dom_document(draw):
    parts = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 7))
        if kind <= 1:
            parts.append(draw(CLOSED_ANCHOR) + "</a>")
        elif kind == 2:
            parts.append(draw(tag(names=["div", "p", "span", "b", "img", "br"], ends=ENDS)))
        elif kind == 3:
            # If the raw text's start tag is lost (in a bogus comment, say), its
            # content is markup: its anchors must be closed too.
            closed = CLOSED_ANCHOR.map(lambda anchor: anchor + "</a>")
            inner = st.lists(st.one_of(closed, st.sampled_from(PIECES[:20])), max_size=3)
            parts.append(draw(raw_text(inner.map("".join))))
        elif kind == 4:
            parts.append(draw(st.sampled_from(PIECES[:15] + PIECES[27:31])))
        else:
            parts.append(draw(VALUE_CHARS))
    return "".join(parts)


# Ordinary documents, as html.parser understands them too.
ORDINARY_VALUES = st.sampled_from(
    ["a", "/b", "c.html", "?q=1", "#f", "http://e.org/", "&amp;", "&lt;", "&#65;", "&#x42;", " ",
     "é"]
)  # fmt: skip


@st.composite
def ordinary_document(draw):
    parts = ["<!DOCTYPE html><html><head><title>t</title></head><body>"]
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 4))
        value = "".join(draw(st.lists(ORDINARY_VALUES, max_size=4)))
        other = draw(st.sampled_from(["", ' class="c"', " id='i'", " target=_blank"]))
        if kind == 0:
            parts.append(f'<a{other} href="{value}">x</a>')
        elif kind == 1:
            parts.append(f"<A HREF='{value}'{other}>y</A>")
        elif kind == 2:
            parts.append(f"<p{other}>text <b>bold</b></p>")
        elif kind == 3:
            parts.append('<!-- a comment <a href="no"> -->')
        else:
            parts.append('<script>var s = "<a href=no>";</script><style>a>b{}</style>')
    parts.append("</body></html>")
    return "".join(parts)


# ---- native == twin ------------------------------------------------------------


@given(doc=soup())
@example(doc="<a href='x' href='y'><a HREF><a href=\"&ampx&amp=&amp;\">")
@example(doc="<script><!--<script></script><a href=no></script><a href=yes>")
def test_native_matches_twin(doc):
    assert native(doc) == twin(doc)
    data = doc.encode()
    assert native(data) == twin(data)


@given(doc=soup(), junk=st.binary(max_size=8), at=st.integers(0, 10**6))
def test_native_matches_twin_on_invalid_utf8(doc, junk, at):
    data = doc.encode()
    at %= len(data) + 1
    data = data[:at] + junk + b"\xff\xc3" + data[at:]
    assert native(data) == twin(data)


@given(doc=st.text(st.sampled_from("<a hrefAHREF=\"' \t\n\r\f/>&#x;ampltbse!-?[]\0\ud800\udfff")))
def test_native_matches_twin_on_character_soup(doc):
    assert native(doc) == twin(doc)


@given(data=st.binary(max_size=300))
def test_native_matches_twin_on_random_bytes(data):
    assert native(data) == twin(data)
    assert native(data, mode="regex") == twin(data, mode="regex")


def test_lone_surrogates_round_trip(extract):
    doc = "<a href='\ud800x\udfff'><a href=\"&amp;\udc80\">"
    assert extract(doc) == ["\ud800x\udfff", "&\udc80"]


# ---- the standard, on known cases ------------------------------------------------

STANDARD_CASES = [
    ("<a href=x href=y><a HREF>", ["x", ""]),
    ("<a href='a\r\nb\rc\0d'>", ["a\nb\nc\ufffdd"]),
    ('<a href="&notit; &notin; &amp=x &ampx &amp;&lt &copy;">', ["&notit; ∉ &amp=x &ampx &< ©"]),
    ("<a href='&#x80;&#x9F;&#0;&#xD800;&#x110000;&#65&#X42;&#'>", ["€Ÿ\ufffd\ufffd\ufffdAB&#"]),
    ("<a href=x", []),
    ('<a href="x', []),
    ("<!--><a href=1><!---><a href=2><!-- --!><a href=3><!-- <a href=no> -->", ["1", "2", "3"]),
    ("<!-- --- > <a href=no> --><a href=4>", ["4"]),
    ("<textarea><a href=no></textarea ><a href=y>", ["y"]),
    ("<title><a href=no></TITLE><a href=y>", ["y"]),
    ("<style><a href=no></stylex><a href=no></style/><a href=y>", ["y"]),
    ("<script><!--<script></script><a href=no></script><a href=yes>", ["yes"]),
    ("<script><!--</script><a href=yes>", ["yes"]),
    ("<a/href=s><a <a href=q></a href='>'><a href=z>", ["s", "q", "z"]),
    ("<?xml <a href=no>?><a href=1></ <a href=no>><a href=2></><a href=3>", ["1", "2", "3"]),
    ("<![CDATA[<a href=no>]]><a href=1><!DOCTYPE <a href=no>><a href=2>", ["1", "2"]),
    ("<plaintext></plaintext><a href=no>", []),
    ("<a\nhref\n=\n'x'\n><a\x0chref=y><a\rhref=z>", ["x", "y", "z"]),
    ("<a href=>", [""]),
    ("<a href=a'b\"c`d=e<f>", ["a'b\"c`d=e<f"]),
    ("<a title='x'href='y'>", ["y"]),
]


@pytest.mark.parametrize(("doc", "expected"), STANDARD_CASES)
def test_standard_cases(extract, doc, expected):
    assert extract(doc) == expected
    assert extract(doc.encode("utf-8", "surrogatepass")) == expected


@pytest.mark.parametrize(("doc", "expected"), STANDARD_CASES)
def test_standard_cases_agree_with_lexbor(doc, expected):
    assert lexbor_links(doc) == expected


# ---- selectolax -----------------------------------------------------------------


@given(doc=dom_document())
def test_matches_lexbor(doc):
    doc = doc.replace("<base", "<basis")  # a <base href> would resolve the links
    expected = lexbor_links(doc)
    assert native(doc) == expected
    assert twin(doc) == expected


@given(doc=dom_document())
def test_base_href_matches_lexbor(doc):
    base = LexborHTMLParser(doc).css_first("base[href]")
    effective = urljoin("http://h/d/", base.attributes["href"] or "") if base else "http://h/d/"
    expected = [urljoin(effective, link) for link in lexbor_links(doc)]
    assert native(doc, "http://h/d/") == expected
    assert twin(doc, "http://h/d/") == expected


# ---- html.parser ----------------------------------------------------------------


@given(doc=ordinary_document())
def test_matches_html_parser_on_ordinary_documents(doc):
    expected = html_parser_links(doc)
    assert native(doc) == expected
    assert twin(doc) == expected
    assert lexbor_links(doc) == expected


HTML_PARSER_DEVIATIONS = [
    # (document, the standard's answer): html.parser answers otherwise.
    ("<a href=first href=second>", ["first"]),
    ("<textarea><a href=no></textarea><a href=yes>", ["yes"]),
    ("<title><a href=no></title><a href=yes>", ["yes"]),
    ("<a href='&ampx&copyz'>", ["&ampx&copyz"]),
    ("<a href=x<a href=y>", ["x<a"]),
]


@pytest.mark.parametrize(("doc", "expected"), HTML_PARSER_DEVIATIONS)
def test_standard_wins_over_html_parser(doc, expected):
    assert html_parser_links(doc) != expected
    assert native(doc) == twin(doc) == lexbor_links(doc) == expected


# ---- regex mode -----------------------------------------------------------------

REGEX_PIECES = st.sampled_from(
    ["<a", "<a ", "<a\n", "<a\t", "<a\xa0", "<a\u2028", "<a\x1c", " ", "\n", "\r", "\x0b",
     "\xa0", "\u3000", "\x85", "href=", 'href="', "href='", " href=\"", '"', "'", ">", "x",
     "h", "é", "<", "a", "\0"]
)  # fmt: skip


# The classic regex takes ~2**k steps for k whitespace characters after "<a"
# when it fails: the sizes keep k <= ~22, where it finishes in well under a second.
@given(doc=st.lists(REGEX_PIECES, max_size=18).map("".join))
@example(doc='<a class="c"\n  href="x">\n<a href="y" >')
@example(doc='<a href="x\n"> <a title="t" href="y">')
def test_regex_mode_matches_classic(extract, doc):
    expected = re.findall(CLASSIC, doc)
    assert extract(doc, mode="regex") == expected
    assert extract(doc.encode("utf-8", "surrogatepass"), mode="regex") == expected


@given(doc=st.lists(REGEX_PIECES, max_size=8).map("".join), junk=st.binary(max_size=4))
def test_regex_mode_on_invalid_utf8(doc, junk):
    data = doc.encode() + junk + doc.encode()
    assert native(data, mode="regex") == re.findall(CLASSIC, data.decode("utf-8", "replace"))


def test_regex_mode_multiline_tags(extract):
    doc = '<a\n  class="nav"\n  href="/one">one</a>\n<a href=\'/two\'\n>two</a><a href="3">'
    assert extract(doc, mode="regex") == re.findall(CLASSIC, doc) == ["/one", "3"]


# ---- hostile inputs: linear time -------------------------------------------------

HOSTILE = {
    "nested-a": b"<a" * (MB // 2),
    "open-href": b'<a href="' * (MB // 9),
    "open-tag": b"<a " + b" " * MB,
    "amp-storm": b'<a href="' + b"&" * MB + b'">',
    "amp-names": b'<a href="' + b"&amp" * (MB // 4) + b'">',
    "amp-long": b'<a href="&' + b"a" * MB + b'">',
    "amp-numeric": b'<a href="&#' + b"9" * MB + b';">',
    "open-comment": b"<!--" + b"-" * MB,
    "comment-dashes": b"<!--" + b"-!-<!-" * (MB // 6),
    "open-script": b"<script><!--<script>" + b"<!--" * (MB // 4),
    "open-title": b"<title>" + b"</titl" * (MB // 6),
    "invalid-utf8": bytes(random.Random(1).randrange(128, 256) for _ in range(MB)),
    "random": bytes(random.Random(2).randrange(256) for _ in range(MB)),
    "many-links": b"<a href=x>" * (MB // 10),
}


HOSTILE_EXPECTED = {
    "nested-a": [],
    "open-href": [],
    "open-tag": [],
    "amp-storm": ["&" * MB],
    "amp-names": ["&" * (MB // 4)],
    "amp-long": ["&" + "a" * MB],
    "amp-numeric": ["\ufffd"],
    "open-comment": [],
    "comment-dashes": [],
    "open-script": [],
    "open-title": [],
    "many-links": ["x"] * (MB // 10),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs(extract, name):
    got = extract(HOSTILE[name])
    if name in HOSTILE_EXPECTED:
        assert got == HOSTILE_EXPECTED[name]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs_native_matches_twin(name):
    data = HOSTILE[name]
    assert native(data) == twin(data)
    text = data.decode("utf-8", "replace")
    assert native(text) == twin(text)


REGEX_HOSTILE = {
    # Each makes the classic regex backtrack for (at least) quadratic time.
    "spaces": ("<a " + " " * 200_000 + 'href="x', []),
    "lines": ("<a " + "x \n" * 100_000, []),
    "hrefs-no-gt": ("<a " + ' href="x"' * 100_000, []),
    "many-a": ("<a " * 200_000 + ' href="x">', ["x"]),
    "then-match": ("<a  " * 100_000 + "\n<a href='y' >" * 3, ["y"] * 3),
    "nbsp": ("<a\xa0" + "\u2028" * 100_000 + "href='z'>", ["z"]),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(REGEX_HOSTILE))
def test_regex_mode_hostile_inputs_native(name):
    doc, expected = REGEX_HOSTILE[name]
    assert native(doc, mode="regex") == expected
    assert native(doc.encode(), mode="regex") == expected


# ---- base href resolution ---------------------------------------------------------


BASE_CASES = [
    ('<a href="b">', None, ["b"]),
    ('<a href="b">', "http://h/a/", ["http://h/a/b"]),
    ('<base href="/x/"><a href="b">', "http://h/a/", ["http://h/x/b"]),
    ('<base href="http://o/p/"><a href="q"><a href="/r">', None, ["http://o/p/q", "http://o/r"]),
    ('<a href="q"><base target=_top><base href="http://1/"><base href="http://2/">', None,
     ["http://1/q"]),
    ("<base href><a href=q>", "http://h/a/", ["http://h/a/q"]),
    ("<script><base href='http://no/'></script><a href=q>", "http://h/", ["http://h/q"]),
    ("</base href='http://no/'><a href=q>", "http://h/", ["http://h/q"]),
    # urljoin keeps the base's fragment for an empty link (a browser drops it).
    ('<a href="">', "http://h/a?x#y", ["http://h/a?x#y"]),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "base_url", "expected"), BASE_CASES)
def test_base_resolution(extract, doc, base_url, expected):
    assert extract(doc, base_url) == expected


# Links and bases made of what urljoin treats specially: csrc/kernels/urljoin.c
# resolves the printable ASCII ones itself and must return exactly what
# urljoin returns; the others (spaces, controls, non-ASCII, ';' params, IPv6
# brackets, other schemes) it leaves to urljoin.
URL_PIECES = st.sampled_from(
    ["/", "//", ".", "..", "./", "../", "?", "#", ";", ":", "a", "B", "%2F", "h", "x.y",
     "http:", "HTTPS:", "http://", "https://", "mailto:", "h:8080", "[", "]", "[::1]", " ",
     "\t", "é", "@", "&amp;", "-", "+", "~", "0"]
)  # fmt: skip
URLS = st.lists(URL_PIECES, max_size=10).map("".join)
BASES = st.one_of(
    URLS,
    st.tuples(st.sampled_from(["http://", "HTTP://", "https://", "ftp://"]), URLS).map("".join),
)


@given(links=st.lists(URLS, max_size=6), base_url=st.one_of(st.none(), BASES),
       base_href=st.one_of(st.none(), URLS))  # fmt: skip
@example(links=["../../../g", "g;x=1/../y", "//g", "?y#s", "", "."], base_url="http://a/b/c/d;p?q",
         base_href=None)  # fmt: skip
@example(links=["a/./b/../c/.", "../", "/./x/../"], base_url="http://h", base_href="d/e/")
def test_resolution_matches_urljoin(links, base_url, base_href):
    head = "" if base_href is None else f'<base href="{html_escape(base_href)}">'
    doc = head + "".join(f'<a href="{html_escape(link)}">' for link in links)
    try:
        expected = parpy.reference.extract_links(doc, base_url)
    except ValueError as exc:  # urljoin refused a link or the base
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            parpy.extract_links(doc, base_url)
        return
    if base_url is not None or base_href is not None:
        base = base_url if base_href is None else base_href
        if base_url is not None and base_href is not None:
            base = urljoin(base_url, base_href)
        assert expected == [urljoin(base, link) for link in links]
    assert parpy.extract_links(doc, base_url) == expected
    assert parpy.extract_links(doc.encode(), base_url) == expected


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;")


def test_regex_mode_ignores_base(extract):
    doc = '<base href="http://o/"><a href="q">'
    assert extract(doc, "http://h/", mode="regex") == ["http://h/q"]
    assert extract(doc, mode="regex") == ["q"]


# ---- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((1,), {}, TypeError, "html must be bytes or str, not int"),
        ((None,), {}, TypeError, "html must be bytes or str, not NoneType"),
        ((bytearray(b"<a href=x>"),), {}, TypeError, "not bytearray"),
        ((memoryview(b"<a href=x>"),), {}, TypeError, "not memoryview"),
        (("", b"http://h/"), {}, TypeError, "base_url must be str or None, not bytes"),
        (("", 1), {}, TypeError, "base_url must be str or None, not int"),
        (("",), {"mode": "xml"}, ValueError, "mode must be 'html' or 'regex'"),
        (("",), {"mode": "HTML"}, ValueError, "mode must be 'html' or 'regex'"),
    ],
)
def test_bad_input(extract, args, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        extract(*args, **kwargs)


def test_empty_and_trivial(extract):
    assert extract("") == [] == extract(b"")
    assert extract("", mode="regex") == []
    assert extract("no tags at all") == []
    assert extract("<") == extract("<a") == extract("</") == extract("&") == []

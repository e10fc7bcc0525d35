/* urllib.parse.urljoin in C, for the inputs described in urljoin.h.
 *
 * It follows CPython's Lib/urllib/parse.py step by step (urlsplit, urlparse,
 * urljoin, urlunsplit), on inputs for which those steps are the same in every
 * Python parpy supports; the comments name the step each part mirrors.
 */
#include "urljoin.h"

#include <stdlib.h>
#include <string.h>

/* What urlsplit finds in a URL (after its scheme, if any). */
typedef struct {
    int has_scheme, has_netloc;
    parpy_span scheme, netloc, path, query, fragment;
} url_parts;

static int
printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int
has_byte(parpy_span span, char c)
{
    return span.len > 0 && memchr(span.s, c, span.len) != NULL;
}

static int
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* urlparse's scheme_chars */
static int
is_scheme_char(char c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

static int
equal_lower(parpy_span span, const char *lower)
{
    size_t n = strlen(lower);
    if (span.len != n) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = span.s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != lower[i]) {
            return 0;
        }
    }
    return 1;
}

static int
is_dots(parpy_span span, size_t n)
{
    return span.len == n && memcmp(span.s, "..", n) == 0;
}

/* urlsplit on a printable ASCII string (nothing to strip or remove). */
static void
split(const char *s, size_t len, url_parts *p)
{
    memset(p, 0, sizeof *p);
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && colon > s && is_alpha(s[0])) {
        size_t i = (size_t)(colon - s);
        size_t k = 0;
        while (k < i && is_scheme_char(s[k])) {
            k++;
        }
        if (k == i) {
            p->has_scheme = 1;
            p->scheme = (parpy_span){s, i};
            s += i + 1;
            len -= i + 1;
        }
    }
    if (len >= 2 && s[0] == '/' && s[1] == '/') { /* _splitnetloc(url, 2) */
        size_t end = 2;
        while (end < len && s[end] != '/' && s[end] != '?' && s[end] != '#') {
            end++;
        }
        p->has_netloc = 1;
        p->netloc = (parpy_span){s + 2, end - 2};
        s += end;
        len -= end;
    }
    const char *hash = memchr(s, '#', len);
    if (hash != NULL) {
        p->fragment = (parpy_span){hash + 1, (size_t)(s + len - hash - 1)};
        len = (size_t)(hash - s);
    }
    const char *mark = memchr(s, '?', len);
    if (mark != NULL) {
        p->query = (parpy_span){mark + 1, (size_t)(s + len - mark - 1)};
        len = (size_t)(mark - s);
    }
    p->path = (parpy_span){s, len};
}

/* A host that urlsplit checks as an IPv6 literal: declined. */
static int
bracketed(const url_parts *p)
{
    return p->has_netloc && (has_byte(p->netloc, '[') || has_byte(p->netloc, ']'));
}

int
parpy_url_base(const char *s, size_t len, parpy_url *base)
{
    url_parts p;
    if (len == 0 || !printable(s, len)) {
        return 0;
    }
    split(s, len, &p);
    if (!p.has_scheme || !p.has_netloc || p.netloc.len == 0 || bracketed(&p) ||
        has_byte(p.path, ';')) {
        return 0;
    }
    /* the scheme as urlsplit gives it: lower-cased */
    if (equal_lower(p.scheme, "http")) {
        base->scheme = (parpy_span){"http", 4};
    }
    else if (equal_lower(p.scheme, "https")) {
        base->scheme = (parpy_span){"https", 5};
    }
    else {
        return 0;
    }
    base->netloc = p.netloc;
    base->path = p.path;
    base->query = p.query;
    return 1;
}

static int
reserve(parpy_urlbuf *out, size_t more)
{
    if (out->cap - out->len >= more) {
        return 0;
    }
    size_t cap = out->cap ? out->cap : 256;
    while (cap - out->len < more) {
        if (cap > ((size_t)-1) / 2) {
            return -1;
        }
        cap *= 2;
    }
    char *data = realloc(out->data, cap);
    if (data == NULL) {
        return -1;
    }
    out->data = data;
    out->cap = cap;
    return 0;
}

static void
put(parpy_urlbuf *out, const char *s, size_t len)
{
    if (len > 0) {
        memcpy(out->data + out->len, s, len);
        out->len += len;
    }
}

static int
push_seg(parpy_urlbuf *out, const char *s, size_t len)
{
    if (out->nsegs == out->segs_cap) {
        size_t cap = out->segs_cap ? 2 * out->segs_cap : 32;
        parpy_span *segs = realloc(out->segs, cap * sizeof *segs);
        if (segs == NULL) {
            return -1;
        }
        out->segs = segs;
        out->segs_cap = cap;
    }
    out->segs[out->nsegs++] = (parpy_span){s, len};
    return 0;
}

/* path.split('/') appended to out->segs */
static int
split_path(parpy_urlbuf *out, parpy_span path)
{
    size_t start = 0;
    for (size_t i = 0; i <= path.len; i++) {
        if (i == path.len || path.s[i] == '/') {
            if (push_seg(out, path.s + start, i - start) < 0) {
                return -1;
            }
            start = i + 1;
        }
    }
    return 0;
}

/* urlunparse((scheme, netloc, '/'.join(path[0..nsegs)), '', query, fragment))
   for a netloc that is not empty; returns 1, or -1 if memory ran out. */
static int
emit(parpy_urlbuf *out, const parpy_url *base, parpy_span netloc, const parpy_span *path,
     size_t nsegs, parpy_span query, parpy_span fragment)
{
    size_t need = base->scheme.len + 3 + netloc.len + 2 + query.len + 1 + fragment.len + 1;
    for (size_t k = 0; k < nsegs; k++) {
        need += path[k].len + 1;
    }
    if (reserve(out, need) < 0) {
        return -1;
    }
    put(out, base->scheme.s, base->scheme.len);
    put(out, "://", 3);
    put(out, netloc.s, netloc.len);
    size_t at = out->len;
    for (size_t k = 0; k < nsegs; k++) {
        if (k > 0) {
            put(out, "/", 1);
        }
        put(out, path[k].s, path[k].len);
    }
    size_t written = out->len - at;
    if (written > 0 && out->data[at] != '/') { /* urlunsplit: url = '/' + url */
        memmove(out->data + at + 1, out->data + at, written);
        out->data[at] = '/';
        out->len++;
    }
    if (query.len > 0) {
        put(out, "?", 1);
        put(out, query.s, query.len);
    }
    if (fragment.len > 0) {
        put(out, "#", 1);
        put(out, fragment.s, fragment.len);
    }
    return 1;
}

int
parpy_urljoin(const parpy_url *base, const char *base_s, size_t base_len, const char *ref,
              size_t ref_len, parpy_urlbuf *out)
{
    if (ref_len == 0) { /* if not url: return base */
        if (reserve(out, base_len) < 0) {
            return -1;
        }
        put(out, base_s, base_len);
        return 1;
    }
    if (!printable(ref, ref_len)) {
        return 0;
    }
    url_parts p;
    split(ref, ref_len, &p);
    if (bracketed(&p)) {
        return 0;
    }
    /* if scheme != bscheme or scheme not in uses_relative: return url */
    if (p.has_scheme && !equal_lower(p.scheme, base->scheme.s)) {
        if (reserve(out, ref_len) < 0) {
            return -1;
        }
        put(out, ref, ref_len);
        return 1;
    }
    if (has_byte(p.path, ';') || (p.has_netloc && p.netloc.len == 0)) {
        return 0; /* params, or an empty netloc: left to urljoin */
    }
    out->nsegs = 0;
    if (p.has_netloc) { /* if netloc: return urlunparse(...) */
        return emit(out, base, p.netloc, &p.path, 1, p.query, p.fragment);
    }
    if (p.path.len == 0) { /* the base's path, and its query if there is none */
        parpy_span query = p.query.len > 0 ? p.query : base->query;
        return emit(out, base, base->netloc, &base->path, 1, query, p.fragment);
    }
    if (p.path.s[0] == '/') {
        if (split_path(out, p.path) < 0) {
            return -1;
        }
    }
    else {
        if (split_path(out, base->path) < 0) {
            return -1;
        }
        if (out->segs[out->nsegs - 1].len != 0) { /* the last is not a directory */
            out->nsegs--;
        }
        if (split_path(out, p.path) < 0) {
            return -1;
        }
        /* segments[1:-1] = filter(None, segments[1:-1]) */
        size_t n = out->nsegs, kept = 1;
        for (size_t k = 1; k + 1 < n; k++) {
            if (out->segs[k].len != 0) {
                out->segs[kept++] = out->segs[k];
            }
        }
        if (n > 1) {
            out->segs[kept++] = out->segs[n - 1];
        }
        out->nsegs = kept;
    }
    /* resolved_path, in place: it never outgrows the segments read */
    size_t n = out->nsegs, kept = 0;
    parpy_span last = out->segs[n - 1];
    for (size_t k = 0; k < n; k++) {
        parpy_span seg = out->segs[k];
        if (is_dots(seg, 2)) {
            if (kept > 0) {
                kept--;
            }
        }
        else if (!is_dots(seg, 1)) {
            out->segs[kept++] = seg;
        }
    }
    if (is_dots(last, 1) || is_dots(last, 2)) {
        out->segs[kept++] = (parpy_span){"", 0};
    }
    /* '/'.join(resolved_path) or '/' */
    size_t written = kept > 1 ? 1 : 0;
    for (size_t k = 0; k < kept && written == 0; k++) {
        written = out->segs[k].len;
    }
    if (written == 0) {
        parpy_span root = {"/", 1};
        return emit(out, base, base->netloc, &root, 1, p.query, p.fragment);
    }
    return emit(out, base, base->netloc, out->segs, kept, p.query, p.fragment);
}

void
parpy_urlbuf_free(parpy_urlbuf *out)
{
    free(out->data);
    free(out->segs);
    memset(out, 0, sizeof *out);
}

/* urllib.parse.urljoin in C, for the links extract_links resolves: pure C11,
 * no Python, so it runs without the GIL.
 *
 * It takes the inputs on which every supported Python's urljoin agrees and
 * that real pages are made of: a base that is an http or https URL with a
 * host, and a reference, both printable ASCII (no space, no control
 * character), neither with a ';' in its path (urlparse's "params"), and no
 * '[' or ']' in a host (IPv6 literals, validated differently by each Python
 * version). On those it returns exactly what urljoin returns; on anything
 * else it declines, and the caller resolves the link with urljoin itself.
 */
#ifndef PARPY_URLJOIN_H
#define PARPY_URLJOIN_H

#include <stddef.h>

/* A slice of a string. */
typedef struct {
    const char *s;
    size_t len;
} parpy_span;

/* A base URL, split as urllib.parse.urlparse splits it (its fragment is
 * never used). Its spans point into the string given to parpy_url_base. */
typedef struct {
    parpy_span scheme, netloc, path, query;
} parpy_url;

/* Growable output and scratch space; zero it before first use and release
 * it with parpy_urlbuf_free. */
typedef struct {
    char *data;
    size_t len, cap;
    parpy_span *segs; /* path segments while a path is resolved */
    size_t nsegs, segs_cap;
} parpy_urlbuf;

/* Splits s[0..len) into *base. Returns 1 if it is a base parpy_urljoin
 * takes, else 0 (every link is then for urljoin). */
int parpy_url_base(const char *s, size_t len, parpy_url *base);

/* Appends urljoin(base, ref) to out->data, where base came from
 * parpy_url_base (which returned 1) and is the string base_s[0..base_len)
 * itself. Returns 1 when appended, 0 when it declines (out unchanged) and
 * -1 if memory ran out. */
int parpy_urljoin(const parpy_url *base, const char *base_s, size_t base_len, const char *ref,
                  size_t ref_len, parpy_urlbuf *out);

void parpy_urlbuf_free(parpy_urlbuf *out);

#endif /* PARPY_URLJOIN_H */

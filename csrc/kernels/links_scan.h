/* The link scanner behind parpy.extract_links: pure C11, no Python, no GMP.
 *
 * parpy_links_scan reads a UTF-8 byte buffer (bytes are taken as they are:
 * invalid UTF-8 is copied through, and since every byte the syntax looks at is
 * ASCII, decoding each href afterwards with errors="replace" gives what
 * decoding the whole input first would) and collects:
 *
 *   PARPY_LINKS_HTML   the href of every <a> start tag in document order, as the
 *                      WHATWG tokenizer sees it, character references decoded;
 *                      and apart, the href of the first <base> start tag that
 *                      has one. See links_scan.c for the subset implemented.
 *   PARPY_LINKS_REGEX  exactly the captures of the classic crawler's
 *                      re.findall(r'<a\s(?:.*?\s)*?href=[\'"](.*?)[\'"].*?>', text)
 *                      on the decoded text, in linear time. No <base>.
 *
 * Time is linear in len for any input; memory is about the size of the output.
 * The scan never reads past html[len - 1] and calls no Python API, so it runs
 * without the GIL.
 */
#ifndef PARPY_LINKS_SCAN_H
#define PARPY_LINKS_SCAN_H

#include <stddef.h>

enum { PARPY_LINKS_HTML = 0, PARPY_LINKS_REGEX = 1 };

/* The result. All memory is malloc'd and owned by the struct; zero it (or let
 * parpy_links_scan do so) before use and release it with parpy_links_free. */
typedef struct {
    char *data;      /* the hrefs, concatenated, UTF-8 as far as the input is */
    size_t len, cap; /* bytes used and allocated in data */
    size_t *ends;    /* href k is data[k ? ends[k - 1] : 0 .. ends[k]) */
    size_t count;    /* number of hrefs */
    size_t ends_cap; /* entries allocated in ends */
    char *base;      /* the first <base href> value (may be NULL when empty) */
    size_t base_len; /* its length in bytes */
    int has_base;    /* 1 if a <base> start tag with an href was seen, else 0 */
} parpy_links;

/* Scans html[0..len) in the given mode into *out, which it first sets to empty
 * (any earlier contents are not freed). Returns 0 on success; -1 if memory ran
 * out, and -2 for an unknown mode, in both cases with *out freed and empty. */
int parpy_links_scan(const unsigned char *html, size_t len, int mode, parpy_links *out);

/* Frees what *out owns and leaves it empty; safe to call twice. */
void parpy_links_free(parpy_links *out);

#endif /* PARPY_LINKS_SCAN_H */

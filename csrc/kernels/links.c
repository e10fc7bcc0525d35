/* extract_links: the hrefs of a page's <a> start tags, as a browser's
 * tokenizer sees them (links_scan.c), resolved against base_url and the
 * page's <base href> as urllib.parse.urljoin resolves them.
 *
 * parse keeps a reference to the page and reads its bytes (or a str's UTF-8)
 * in compute, without the GIL. compute scans the page and resolves the links
 * that urljoin.c takes (nearly all of a real page's); build makes their
 * strings, and decodes and resolves the others with urljoin itself.
 */
#include "parpy.h"

#include "links_scan.h"
#include "urljoin.h"

#include <string.h>

#define LINKS_ENOMEM PARPY_CODE_FIRST

static const parpy_error links_errors[] = {
    {LINKS_ENOMEM, &PyExc_MemoryError, "out of memory"},
    {0, NULL, NULL},
};

typedef struct {
    PyObject *page;    /* strong: the bytes or str given */
    PyObject *encoded; /* strong: a str's UTF-8 with surrogates passed, or NULL */
    const char *data;  /* the UTF-8 read by compute */
    Py_ssize_t len;
    PyObject *base_url; /* strong, or NULL */
    const char *base;   /* its UTF-8 (cached in the str), or NULL */
    Py_ssize_t base_len;
    int mode;
    const char *errors; /* how build decodes the hrefs */
    parpy_links links;
    /* Resolved in compute: link k is resolved[k ? ends[k - 1] : 0 .. ends[k])
       if done[k], else left to build. */
    parpy_urlbuf resolved;
    size_t *ends;
    unsigned char *done;
    int c_base; /* compute had a base urljoin.c takes */
} links_item;

/* Validates base_url and mode (args[1], args[2]; NULL where omitted).
   Returns 0 with *mode set, or -1 with an exception set. */
static int
links_options(PyObject *const *args, int *mode)
{
    PyObject *base_url = args[1], *name = args[2];
    if (base_url != NULL && base_url != Py_None && !PyUnicode_Check(base_url)) {
        PyErr_Format(PyExc_TypeError, "base_url must be str or None, not %.200s",
                     Py_TYPE(base_url)->tp_name);
        return -1;
    }
    *mode = PARPY_LINKS_HTML;
    if (name != NULL) {
        int is_html = PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "html") == 0;
        int is_regex =
            PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, "regex") == 0;
        if (!is_html && !is_regex) {
            PyErr_Format(PyExc_ValueError, "mode must be 'html' or 'regex', not %R", name);
            return -1;
        }
        *mode = is_regex ? PARPY_LINKS_REGEX : PARPY_LINKS_HTML;
    }
    return 0;
}

/* Only the mode is kept: base_url is a reference, parsed again per item. */
static int
links_bind(void *p, PyObject *const *args, int first)
{
    (void)first;
    return links_options(args, &((links_item *)p)->mode);
}

static int
links_parse(void *p, PyObject *const *args)
{
    links_item *it = p;
    PyObject *html = args[0], *base_url = args[1];
    if (PyBytes_Check(html)) {
        it->data = PyBytes_AS_STRING(html);
        it->len = PyBytes_GET_SIZE(html);
        it->errors = "replace";
    }
    else if (PyUnicode_Check(html)) {
        it->data = PyUnicode_AsUTF8AndSize(html, &it->len); /* cached in the str */
        it->errors = "strict";
        if (it->data == NULL) { /* lone surrogates: carried through as they are */
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                return -1;
            }
            PyErr_Clear();
            it->encoded = PyUnicode_AsEncodedString(html, "utf-8", "surrogatepass");
            if (it->encoded == NULL) {
                return -1;
            }
            it->data = PyBytes_AS_STRING(it->encoded);
            it->len = PyBytes_GET_SIZE(it->encoded);
            it->errors = "surrogatepass";
        }
    }
    else {
        PyErr_Format(PyExc_TypeError, "html must be bytes or str, not %.200s",
                     Py_TYPE(html)->tp_name);
        return -1;
    }
    if (links_options(args, &it->mode) < 0) {
        Py_CLEAR(it->encoded);
        return -1;
    }
    it->page = Py_NewRef(html);
    it->base_url = base_url != NULL && base_url != Py_None ? Py_NewRef(base_url) : NULL;
    if (it->base_url != NULL) {
        it->base = PyUnicode_AsUTF8AndSize(it->base_url, &it->base_len);
        if (it->base == NULL) { /* lone surrogates: build resolves every link */
            PyErr_Clear();
        }
    }
    return 0;
}

static double
links_cost(const void *p)
{
    /* one pass over the page; fitted on x86-64 */
    return 200.0 + 1.5 * (double)((const links_item *)p)->len;
}

/* The links of a page take no more than the page itself, about. */
static uint64_t
links_result_bytes(const void *p)
{
    return (uint64_t)((const links_item *)p)->len;
}

/* Whether links are resolved at all: against base_url, the <base href>, or both. */
static int
resolving(const links_item *it)
{
    return it->base_url != NULL || (it->mode == PARPY_LINKS_HTML && it->links.has_base);
}

/* Resolves in C the links urljoin.c takes. Returns 0, or -1 if memory ran out. */
static int
resolve(links_item *it)
{
    parpy_links *links = &it->links;
    size_t count = links->count;
    it->ends = malloc((count ? count : 1) * sizeof *it->ends);
    it->done = calloc(count ? count : 1, 1);
    if (it->ends == NULL || it->done == NULL) {
        return -1;
    }
    /* The base: base_url, the <base href>, or the one joined to the other. */
    parpy_url base;
    const char *base_s = it->base;
    size_t base_len = (size_t)it->base_len;
    int has_href = it->mode == PARPY_LINKS_HTML && links->has_base;
    const char *href = links->base ? links->base : "";
    if (has_href && it->base_url == NULL) {
        base_s = href;
        base_len = links->base_len;
    }
    if (base_s == NULL || !parpy_url_base(base_s, base_len, &base)) {
        return 0; /* build resolves them all, as before */
    }
    parpy_urlbuf joined = {0};
    if (has_href && it->base_url != NULL) {
        int rc = parpy_urljoin(&base, base_s, base_len, href, links->base_len, &joined);
        if (rc <= 0 || !parpy_url_base(joined.data, joined.len, &base)) {
            parpy_urlbuf_free(&joined);
            return rc < 0 ? -1 : 0;
        }
        base_s = joined.data;
        base_len = joined.len;
    }
    it->c_base = 1;
    size_t start = 0;
    for (size_t k = 0; k < count; k++) {
        size_t end = links->ends[k];
        int rc =
            parpy_urljoin(&base, base_s, base_len, links->data + start, end - start, &it->resolved);
        if (rc < 0) {
            parpy_urlbuf_free(&joined);
            return -1;
        }
        it->done[k] = (unsigned char)rc;
        it->ends[k] = it->resolved.len;
        start = end;
    }
    parpy_urlbuf_free(&joined);
    return 0;
}

static int
links_compute(void *p, const parpy_ctx *ctx)
{
    links_item *it = p;
    (void)ctx;
    int rc =
        parpy_links_scan((const unsigned char *)it->data, (size_t)it->len, it->mode, &it->links);
    if (rc == 0 && resolving(it)) {
        rc = resolve(it);
    }
    return rc == 0 ? PARPY_OK : LINKS_ENOMEM;
}

static void
links_release(void *p)
{
    links_item *it = p;
    parpy_links_free(&it->links);
    parpy_urlbuf_free(&it->resolved);
    free(it->ends);
    it->ends = NULL;
    free(it->done);
    it->done = NULL;
    Py_CLEAR(it->page);
    Py_CLEAR(it->encoded);
    Py_CLEAR(it->base_url);
}

/* The base every link is resolved against, as a new reference, or NULL
   (none) with no exception; NULL with an exception set on failure. */
static PyObject *
effective_base(links_item *it, PyObject *urljoin)
{
    PyObject *base_href = NULL;
    if (it->mode == PARPY_LINKS_HTML && it->links.has_base) {
        base_href = PyUnicode_DecodeUTF8(it->links.base ? it->links.base : "",
                                         (Py_ssize_t)it->links.base_len, it->errors);
        if (base_href == NULL) {
            return NULL;
        }
    }
    if (it->base_url != NULL && base_href != NULL) {
        PyObject *base = PyObject_CallFunctionObjArgs(urljoin, it->base_url, base_href, NULL);
        Py_DECREF(base_href);
        return base;
    }
    return base_href != NULL ? base_href : Py_XNewRef(it->base_url);
}

static PyObject *
links_build(void *p)
{
    links_item *it = p;
    PyObject *list = NULL, *module = NULL, *urljoin = NULL, *base = NULL;
    int resolve_all = resolving(it);
    if (resolve_all && !it->c_base) {
        /* As the twin does: the base first (urljoin may refuse it), then each link. */
        module = PyImport_ImportModule("urllib.parse");
        urljoin = module ? PyObject_GetAttrString(module, "urljoin") : NULL;
        base = urljoin ? effective_base(it, urljoin) : NULL;
        if (base == NULL) {
            goto done;
        }
    }
    list = PyList_New((Py_ssize_t)it->links.count);
    if (list == NULL) {
        goto done;
    }
    size_t start = 0, done_start = 0;
    for (size_t k = 0; k < it->links.count; k++) {
        size_t end = it->links.ends[k];
        PyObject *href;
        if (resolve_all && it->done[k]) { /* resolved by compute: ASCII */
            href = PyUnicode_DecodeASCII(it->resolved.data + done_start,
                                         (Py_ssize_t)(it->ends[k] - done_start), NULL);
        }
        else {
            href =
                PyUnicode_DecodeUTF8(it->links.data + start, (Py_ssize_t)(end - start), it->errors);
            if (href != NULL && resolve_all) {
                if (base == NULL) { /* the first link urljoin.c left */
                    module = PyImport_ImportModule("urllib.parse");
                    urljoin = module ? PyObject_GetAttrString(module, "urljoin") : NULL;
                    base = urljoin ? effective_base(it, urljoin) : NULL;
                }
                Py_SETREF(href,
                          base ? PyObject_CallFunctionObjArgs(urljoin, base, href, NULL) : NULL);
            }
        }
        if (resolve_all) {
            done_start = it->ends[k];
        }
        start = end;
        if (href == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)k, href);
    }
done:
    Py_XDECREF(base);
    Py_XDECREF(urljoin);
    Py_XDECREF(module);
    links_release(it);
    return list;
}

static const char *const links_keywords[] = {NULL, "base_url", "mode"};

const parpy_kernel parpy_kernel_extract_links = {
    .name = "extract_links",
    .doc =
        "extract_links(html, /, base_url=None, mode='html')\n--\n\n"
        "Return the href of every <a> start tag of html, in document order.\n"
        "\n"
        "As a browser's tokenizer sees them (WHATWG HTML, \"Tokenization\"):\n"
        "character references decoded, nothing from comments, doctypes, CDATA,\n"
        "script, style, textarea, title and the other raw-text elements. Any input\n"
        "takes linear time; the GIL is released while it is scanned. In batches an\n"
        "item is html, or a tuple (html, base_url[, mode]).\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "html : bytes or str\n"
        "    The page; bytes are decoded as UTF-8 with errors='replace'.\n"
        "base_url : str or None, default None\n"
        "    With it and the document's first <base href>, links are resolved as\n"
        "    urllib.parse.urljoin resolves them; None leaves them as written.\n"
        "mode : {'html', 'regex'}, default 'html'\n"
        "    'regex' returns exactly what the classic crawler's\n"
        "    re.findall(r'<a\\s(?:.*?\\s)*?href=[\\'\"](.*?)[\\'\"].*?>', text) returns,\n"
        "    in linear time.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "list of str\n"
        "    The links, in document order.\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    If html is not bytes or str, or base_url is not a str or None.\n"
        "ValueError\n"
        "    If mode is not 'html' or 'regex'.",
    .min_args = 1,
    .max_args = 3,
    .keywords = links_keywords,
    .item_size = sizeof(links_item),
    .parse = links_parse,
    .bind = links_bind,
    .cost = links_cost,
    .result_bytes = links_result_bytes,
    .compute = links_compute,
    .build = links_build,
    .release = links_release,
    .errors = links_errors,
};

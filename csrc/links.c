/* extract_links: the hrefs of a page's <a> start tags, as a browser's
 * tokenizer sees them (links_scan.c), resolved against base_url and the
 * page's <base href> with urllib.parse.urljoin.
 *
 * parse keeps a reference to the page and reads its bytes (or a str's UTF-8)
 * in compute, without the GIL; build decodes each href and resolves it.
 */
#include "parpy.h"

#include "links_scan.h"

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
    int mode;
    const char *errors; /* how build decodes the hrefs */
    parpy_links links;
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

static int
links_compute(void *p, const parpy_ctx *ctx)
{
    links_item *it = p;
    (void)ctx;
    int rc =
        parpy_links_scan((const unsigned char *)it->data, (size_t)it->len, it->mode, &it->links);
    return rc == 0 ? PARPY_OK : LINKS_ENOMEM;
}

static void
links_release(void *p)
{
    links_item *it = p;
    parpy_links_free(&it->links);
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
    int resolve = it->base_url != NULL || (it->mode == PARPY_LINKS_HTML && it->links.has_base);
    if (resolve) {
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
    size_t start = 0;
    for (size_t k = 0; k < it->links.count; k++) {
        size_t end = it->links.ends[k];
        PyObject *href =
            PyUnicode_DecodeUTF8(it->links.data + start, (Py_ssize_t)(end - start), it->errors);
        start = end;
        if (href != NULL && base != NULL) {
            Py_SETREF(href, PyObject_CallFunctionObjArgs(urljoin, base, href, NULL));
        }
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
        "Return the href of every <a> start tag of html (bytes, decoded as UTF-8 with\n"
        "errors='replace', or str), in document order, as a browser's tokenizer sees\n"
        "them (WHATWG HTML, \"Tokenization\"): character references decoded, nothing\n"
        "from comments, doctypes, CDATA, script, style, textarea, title and the other\n"
        "raw-text elements. With base_url and the document's first <base href>,\n"
        "links are resolved as urllib.parse.urljoin resolves them.\n\n"
        "mode='regex' returns exactly what the classic crawler's\n"
        "re.findall(r'<a\\s(?:.*?\\s)*?href=[\\'\"](.*?)[\\'\"].*?>', text) returns, in\n"
        "linear time. Any input takes linear time; the GIL is released while it is\n"
        "scanned. In batches an item is html, or a tuple (html, base_url[, mode]).",
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

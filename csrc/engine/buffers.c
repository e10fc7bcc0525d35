/* parpy.map over buffers (see buffers.h): every thread of the team takes
 * the next block of elements from a shared cursor until none is left, and
 * looks at the cancel flags between blocks. A block's size adapts to the
 * function's speed, so that one takes about a millisecond: Ctrl-C stops the
 * batch that soon after (plus one call), and the cursor and clock cost next
 * to nothing. A function with a status stops the batch at its first
 * failing element: blocks before it finish, blocks after it are not
 * started, so the element reported is the first that fails. */
#include "engine/buffers.h"

#include "engine/call.h"
#include "engine/teams.h"
#include "kernels/cfunc.h"
#include "runtime/clock.h"
#include "runtime/errors.h"

#include <pthread.h>
#include <string.h>

#define FIRST_BLOCK   16        /* elements of a thread's first block */
#define MAX_BLOCK     (1 << 16) /* and of its largest */
#define BLOCK_NS      1000000   /* the time a block aims at */
#define ELEMENT_NS    20.0      /* a guess at an element's cost, for where to run */
#define INLINE_GIL_NS 2.0e4     /* below this the GIL is kept */

typedef struct {
    const parpy_cf_kernel *kernel;
    const parpy_cf_scalar *in;
    parpy_cf_scalar *out;
    const parpy_cf_scalar *bound; /* args[1..] of the template */
    size_t n;
    size_t fixed;         /* the block size chunksize= fixed, or 0: adaptive */
    atomic_size_t cursor; /* the next element no thread has taken */
    atomic_int cancel;    /* the job's: set when the wait is interrupted */
    parpy_control *control;
    atomic_int stopped;
    atomic_size_t failed_at; /* the first element known to fail, or n */
    pthread_mutex_t lock;    /* guards status, with failed_at */
    int status;              /* failed_at's */
} buffer_run;

/* Element at failed with status: the first to fail, unless one before it
   did. */
static void
record_failure(buffer_run *r, size_t at, int status)
{
    pthread_mutex_lock(&r->lock);
    if (at < atomic_load_explicit(&r->failed_at, memory_order_relaxed)) {
        atomic_store_explicit(&r->failed_at, at, memory_order_relaxed);
        r->status = status;
    }
    pthread_mutex_unlock(&r->lock);
}

static void
buffer_body(void *arg, int Py_UNUSED(team))
{
    buffer_run *r = arg;
    parpy_ctx ctx = {{&r->cancel, r->control != NULL ? &r->control->cancel : NULL, NULL}};
    size_t size = r->fixed > 0 ? r->fixed : FIRST_BLOCK;
    for (;;) {
        if (parpy_cancelled(&ctx)) {
            atomic_store_explicit(&r->stopped, 1, memory_order_relaxed);
            return;
        }
        size_t start = atomic_fetch_add_explicit(&r->cursor, size, memory_order_relaxed);
        if (start >= r->n || start > atomic_load_explicit(&r->failed_at, memory_order_relaxed)) {
            return;
        }
        size_t count = r->n - start < size ? r->n - start : size;
        int64_t began = r->fixed > 0 ? 0 : parpy_now_ns();
        int status = 0;
        size_t done =
            parpy_cf_loop(&r->kernel->fn, r->in + start, r->out + start, r->bound, count, &status);
        if (r->control != NULL) {
            atomic_fetch_add_explicit(&r->control->done, done, memory_order_relaxed);
        }
        if (done < count) {
            record_failure(r, start + done, status);
            return;
        }
        if (r->fixed == 0) {
            int64_t took = parpy_now_ns() - began;
            if (took < BLOCK_NS / 2 && size < MAX_BLOCK) {
                size *= 2;
            }
            else if (took > 2 * BLOCK_NS && size > 1) {
                size /= 2;
            }
        }
    }
}

/* The element type of a buffer's format: "d", "<q", "=L", ... Returns the
   type, or -1. */
static int
format_type(const Py_buffer *view)
{
    const char *f = view->format != NULL ? view->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') { /* native order: little-endian here */
        f++;
    }
    if (view->itemsize != 8 || f[0] == '\0' || f[1] != '\0') {
        return -1;
    }
    switch (f[0]) {
    case 'q':
    case 'l':
        return PARPY_CF_INT64;
    case 'Q':
    case 'L':
        return PARPY_CF_UINT64;
    case 'd':
        return PARPY_CF_FLOAT64;
    default:
        return -1;
    }
}

/* A view of obj (what, "items" or "out") as C-contiguous elements of type.
   Returns 0, or -1 with an exception set and no view held. */
static int
view_of(PyObject *obj, Py_buffer *view, int writable, parpy_cf_type type, const char *name,
        const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyObject *exc = parpy_fetch_exception();
        if (writable && PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
            PyBuffer_Release(view);
            PyErr_Format(PyExc_TypeError, "parpy.map(%s): %s must be writable", name, what);
        }
        else {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "parpy.map(%s): %s must be a C-contiguous buffer (a strided view: copy "
                         "it first, e.g. numpy.ascontiguousarray)",
                         name, what);
        }
        PyObject *ours = parpy_fetch_exception();
        PyException_SetCause(ours, exc); /* steals exc */
        parpy_restore_exception(ours);
        return -1;
    }
    if (format_type(view) != (int)type) {
        PyErr_Format(PyExc_TypeError,
                     "parpy.map(%s): %s must be a buffer of %s (format '%c'), not format '%s' of "
                     "%zd-byte elements",
                     name, what, parpy_cf_type_name(type), parpy_cf_type_format(type),
                     view->format != NULL ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The container parpy.map returns for items: like it, of type, n elements. */
static PyObject *
new_output(PyObject *items, const Py_buffer *view, parpy_cf_type type)
{
    char format[2] = {parpy_cf_type_format(type), '\0'};
    PyObject *shape = PyTuple_New(view->ndim);
    for (int d = 0; shape != NULL && d < view->ndim; d++) {
        PyTuple_SET_ITEM(shape, d, PyLong_FromSsize_t(view->shape[d]));
    }
    if (shape == NULL || PyErr_Occurred()) {
        Py_XDECREF(shape);
        return NULL;
    }
    PyObject *result = NULL, *module = NULL;
    const char *tp = Py_TYPE(items)->tp_name;
    if (strcmp(tp, "numpy.ndarray") == 0) {
        module = PyImport_ImportModule("numpy");
        result = module ? PyObject_CallMethod(module, "empty", "Os", shape, format) : NULL;
    }
    else if (strcmp(tp, "array.array") == 0) {
        PyObject *zeros = PyBytes_FromStringAndSize(NULL, view->len);
        if (zeros != NULL) {
            memset(PyBytes_AS_STRING(zeros), 0, (size_t)view->len);
            result = PyObject_CallFunction((PyObject *)Py_TYPE(items), "sN", format, zeros);
        }
    }
    else {
        PyObject *bytes = PyByteArray_FromStringAndSize(NULL, view->len);
        PyObject *mv = bytes ? PyMemoryView_FromObject(bytes) : NULL;
        result = mv ? PyObject_CallMethod(mv, "cast", "sO", format, shape) : NULL;
        Py_XDECREF(mv);
        Py_XDECREF(bytes);
    }
    Py_XDECREF(module);
    Py_DECREF(shape);
    return result;
}

PyObject *
parpy_map_buffer(parpy_state *st, PyObject *kernel, PyObject *items, PyObject *out, int workers,
                 int chunksize, parpy_control *control)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)kernel;
    const parpy_cf_kernel *k = (const parpy_cf_kernel *)(const void *)ko->kernel;
    const char *name = k->table.name;
    if (k->fn.nargs > 1 && ko->bound == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "parpy.map(%s): a buffer gives one argument per element, and %s takes %d: "
                     "bind the others first (%s.bind(...))",
                     name, name, k->fn.nargs, name);
        return NULL;
    }
    Py_buffer in, dest;
    if (view_of(items, &in, 0, k->fn.args[0], name, "items") < 0) {
        return NULL;
    }
    Py_ssize_t n = in.len / 8;
    PyObject *result = out != NULL ? Py_NewRef(out) : new_output(items, &in, k->fn.result);
    if (result == NULL || view_of(result, &dest, 1, k->fn.result, name, "out") < 0) {
        Py_XDECREF(result);
        PyBuffer_Release(&in);
        return NULL;
    }
    if (dest.len != in.len) {
        PyErr_Format(PyExc_ValueError, "parpy.map(%s): out has %zd elements, items %zd", name,
                     dest.len / 8, n);
        goto fail;
    }
    buffer_run r = {
        .kernel = k,
        .in = in.buf,
        .out = dest.buf,
        .bound = ((const parpy_cf_item *)ko->template)->args,
        .n = (size_t)n,
        .fixed = chunksize > 0 ? (size_t)chunksize : 0,
        .control = control,
    };
    atomic_init(&r.cursor, 0);
    atomic_init(&r.cancel, 0);
    atomic_init(&r.stopped, 0);
    atomic_init(&r.failed_at, (size_t)n);
    pthread_mutex_init(&r.lock, NULL);
    Py_ssize_t threads = workers > 0 ? workers : parpy_default_threads();
    parpy_team_job job = {
        .body = buffer_body,
        .arg = &r,
        .nthreads = (int)(n < threads ? (n > 0 ? n : 1) : threads),
        .cancel = &r.cancel,
    };
    int interrupted = n > 0 && parpy_team_run(&job, (double)n * ELEMENT_NS, INLINE_GIL_NS) < 0;
    pthread_mutex_destroy(&r.lock);
    if (interrupted) {
        goto fail; /* the handlers' exception */
    }
    size_t failed_at = atomic_load(&r.failed_at);
    if (failed_at < (size_t)n) {
        parpy_raise_status(st, name, r.status);
        parpy_add_note(st, "parpy.%s: items[%zu]", name, failed_at);
        goto fail;
    }
    if (atomic_load(&r.stopped)) {
        PyErr_Format(st->cancelled_error, "%s: cancelled", name);
        goto fail;
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&dest);
    return result;
fail:
    PyBuffer_Release(&in);
    PyBuffer_Release(&dest);
    Py_DECREF(result);
    return NULL;
}

/* The native half of parpy.lab.divide_and_conquer: one split computation of
 * F(n) or of an int's decimal digits (kernels/divide.c) on a team, with
 * every task recorded: what it did, on which thread, when, and which tasks'
 * results it took. parpy/lab/_divide.py computes the work and the span from
 * them. Runs on a driver while the caller waits interruptibly (Ctrl-C
 * cancels between steps).
 */
#include "engine/teams.h"
#include "kernels/divide.h"
#include "lab/lab.h"

#include <stdlib.h>
#include <string.h>

#define TRACE_EVENTS (1 << 16)

typedef struct {
    int fib;
    uint64_t n;
    mpz_t x; /* to_decimal's int */
    mpz_t z; /* F(n) */
    char *text;
    size_t len;
    parpy_fib_split *fib_state; /* the team's, while it runs */
    parpy_dec_split *dec_state;
    int nthreads;
    parpy_dc_trace trace;
    atomic_int cancel;
    int code;
} lab_split;

static void
lab_split_body(void *arg, int Py_UNUSED(team))
{
    lab_split *c = arg;
    parpy_ctx ctx = {{&c->cancel, NULL, NULL}};
    int code = c->fib ? parpy_fib_split_run(&c->fib_state, c->z, c->n, c->nthreads, &ctx, &c->trace)
                      : parpy_dec_split_run(&c->dec_state, c->x, &c->text, &c->len, c->nthreads,
                                            &ctx, &c->trace);
    if (parpy_team_thread() == 0) {
        c->code = code;
    }
}

static PyObject *
events_list(const parpy_dc_trace *trace)
{
    size_t n = atomic_load(&trace->len);
    n = n < trace->cap ? n : trace->cap;
    int64_t origin = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        origin = trace->events[i].start_ns < origin ? trace->events[i].start_ns : origin;
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        const parpy_dc_event *e = &trace->events[i];
        PyObject *deps = PyTuple_New(0);
        for (int d = 0; deps != NULL && d < 3; d++) {
            if (e->deps[d] >= 0 && (size_t)e->deps[d] < n) {
                PyObject *dep = PyLong_FromLongLong(e->deps[d]);
                if (dep == NULL || _PyTuple_Resize(&deps, PyTuple_GET_SIZE(deps) + 1) < 0) {
                    Py_XDECREF(dep);
                    Py_CLEAR(deps);
                    break;
                }
                PyTuple_SET_ITEM(deps, PyTuple_GET_SIZE(deps) - 1, dep);
            }
        }
        PyObject *row = deps == NULL ? NULL
                                     : Py_BuildValue("(siiKddN)", e->what, e->step, e->thread,
                                                     (unsigned long long)e->bits,
                                                     (double)(e->start_ns - origin) * 1e-9,
                                                     (double)(e->end_ns - origin) * 1e-9, deps);
        if (row == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, row);
    }
    return list;
}

PyObject *
parpy_lab_divide(PyObject *module, PyObject *args)
{
    (void)module;
    const char *which;
    PyObject *arg;
    int workers;
    if (!PyArg_ParseTuple(args, "sOi:_lab_divide", &which, &arg, &workers)) {
        return NULL;
    }
    lab_split c = {.fib = strcmp(which, "fib") == 0, .code = PARPY_CANCELLED};
    if (!c.fib && strcmp(which, "to_decimal") != 0) {
        PyErr_Format(PyExc_ValueError, "which must be 'fib' or 'to_decimal', not %R",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    parpy_intview view;
    if (c.fib) {
        if (parpy_parse_u64(arg, "n", &c.n) < 0) {
            return NULL;
        }
        c.nthreads = c.n <= 93 ? 1 : parpy_fib_split_threads(c.n, workers);
    }
    else {
        if (!PyLong_Check(arg) || parpy_intview_init(&view, arg) < 0) {
            return PyErr_Occurred()
                       ? NULL
                       : PyErr_Format(PyExc_TypeError, "x must be an int, not %T", arg);
        }
        c.nthreads = parpy_dec_split_threads(parpy_intview_bits(&view), workers);
    }
    if (c.nthreads < 2) {
        if (!c.fib) {
            parpy_intview_release(&view);
        }
        return PyErr_Format(PyExc_ValueError,
                            "%s of this size is not split over threads (given %d workers)", which,
                            workers);
    }
    mpz_init(c.x);
    mpz_init(c.z);
    if (!c.fib) {
        parpy_intview_to_mpz(&view, c.x); /* small enough: checked by parpy.lab */
        parpy_intview_release(&view);
    }
    c.trace.cap = TRACE_EVENTS;
    c.trace.events = malloc(TRACE_EVENTS * sizeof(parpy_dc_event));
    atomic_init(&c.trace.len, 0);
    atomic_init(&c.cancel, 0);
    PyObject *result = NULL;
    if (c.trace.events == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    parpy_team_job job = {
        .body = lab_split_body, .arg = &c, .nthreads = c.nthreads, .cancel = &c.cancel};
    if (parpy_team_run(&job, 1e12, 0.0) < 0) {
        goto done; /* interrupted: the exception is set */
    }
    if (c.code != PARPY_OK) {
        PyErr_SetString(c.code == PARPY_CANCELLED ? PyExc_KeyboardInterrupt : PyExc_MemoryError,
                        "parpy.lab.divide_and_conquer: out of memory");
        goto done;
    }
    PyObject *value;
    if (c.fib) {
        parpy_intbuf out;
        if (parpy_intbuf_alloc(&out, mpz_sizeinbase(c.z, 2)) < 0) {
            goto done;
        }
        parpy_intbuf_store(&out, c.z);
        value = parpy_intbuf_finish(&out);
    }
    else {
        value = PyUnicode_DecodeASCII(c.text, (Py_ssize_t)c.len, NULL);
    }
    PyObject *events = value != NULL ? events_list(&c.trace) : NULL;
    result = events != NULL ? Py_BuildValue("(NiN)", value, c.nthreads, events) : NULL;
    if (result == NULL) {
        Py_XDECREF(value);
        Py_XDECREF(events);
    }
done:
    mpz_clear(c.x);
    mpz_clear(c.z);
    free(c.text);
    free(c.trace.events);
    return result;
}

const char parpy_lab_divide_doc[] =
    "_lab_divide(which, x, workers, /)\n--\n\n"
    "F(x) (which 'fib') or the decimal digits of x ('to_decimal'), split over the\n"
    "threads workers allows, with every task recorded. Returns (value, threads,\n"
    "tasks): tasks is a list of (what, step, thread, bits, start, end, deps), times\n"
    "in seconds from the first task's start, deps the indices of the tasks whose\n"
    "results it took. ValueError if x is too small to split.";

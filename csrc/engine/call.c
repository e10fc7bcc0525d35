/* Kernel calls: parsing a call's arguments, taking a value, running one
 * item, raising a kernel's codes, notes on exceptions. */
#include "engine/call.h"

#include "engine/batch.h"
#include "engine/teams.h"
#include "kernels/cfunc.h"
#include "runtime/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------- */

void
parpy_raise_status(parpy_state *st, const char *name, int status)
{
    PyObject *exc = PyObject_CallFunction(
        st->status_error, "N", PyUnicode_FromFormat("%s: returned status %d", name, status));
    PyObject *value = exc != NULL ? PyLong_FromLong(status) : NULL;
    if (value != NULL && PyObject_SetAttrString(exc, "status", value) == 0) {
        PyErr_SetObject(st->status_error, exc);
    }
    Py_XDECREF(value);
    Py_XDECREF(exc);
}

void
parpy_raise_code(parpy_state *st, const parpy_kernel *kernel, const void *item, int code)
{
    if (code == PARPY_CANCELLED) {
        PyErr_Format(st->cancelled_error, "%s: cancelled", kernel->name);
        return;
    }
    if (code == PARPY_CF_FAILED && item != NULL && parpy_cf_is_kernel(kernel)) {
        parpy_raise_status(st, kernel->name, ((const parpy_cf_item *)item)->status);
        return;
    }
    for (const parpy_error *e = kernel->errors; e != NULL && e->code != 0; e++) {
        if (e->code == code) {
            PyErr_Format(*e->type, "%s: %s", kernel->name, e->message);
            return;
        }
    }
    PyErr_Format(PyExc_SystemError, "%s: unknown error code %d", kernel->name, code);
}

void
parpy_add_note(parpy_state *st, const char *format, ...)
{
    char text[200];
    va_list ap;
    va_start(ap, format);
    vsnprintf(text, sizeof(text), format, ap);
    va_end(ap);
    PyObject *exc = parpy_fetch_exception();
    PyObject *note = PyUnicode_FromString(text);
    PyObject *r = note ? PyObject_CallMethodOneArg(exc, st->str_add_note, note) : NULL;
    if (r == NULL) {
        PyErr_Clear(); /* the exception itself matters more than its note */
    }
    Py_XDECREF(r);
    Py_XDECREF(note);
    parpy_restore_exception(exc);
}

/* ---- calls -------------------------------------------------------------- */

/* Parses the table's own arguments. */
static int
parse_args(const parpy_kernel *k, void *item, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    PyObject *all[PARPY_MAX_ARGS] = {NULL};
    if (nargs > k->max_args) {
        PyErr_Format(PyExc_TypeError, "%s() takes %s %d positional argument%s (%zd given)", k->name,
                     k->min_args == k->max_args ? "exactly" : "at most", k->max_args,
                     k->max_args == 1 ? "" : "s", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        all[i] = args[i];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nkw > 0 && k->keywords == NULL) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", k->name);
        return -1;
    }
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int found = 0;
        for (int i = 0; i < k->max_args && !found; i++) {
            if (k->keywords[i] != NULL &&
                PyUnicode_CompareWithASCIIString(name, k->keywords[i]) == 0) {
                if (all[i] != NULL) {
                    PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                                 k->name, k->keywords[i]);
                    return -1;
                }
                all[i] = args[nargs + j];
                found = 1;
            }
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", k->name,
                         name);
            return -1;
        }
    }
    for (int i = 0; i < k->min_args; i++) {
        if (all[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() takes %s %d argument%s (%zd given)", k->name,
                         k->min_args == k->max_args ? "exactly" : "at least", k->min_args,
                         k->min_args == 1 ? "" : "s", nargs + nkw);
            return -1;
        }
    }
    return k->parse(item, all);
}

int
parpy_parse_call(PyObject *kernel, void *item, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)kernel;
    if (ko->template != NULL) {
        memcpy(item, ko->template, ko->kernel->item_size);
    }
    if (ko->bound == NULL) {
        return parse_args(ko->kernel, item, args, nargs, kwnames);
    }
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_Format(PyExc_TypeError,
                     "%s.bind(...)() takes exactly 1 positional argument (%zd given)",
                     ko->kernel->name, nargs);
        return -1;
    }
    PyObject *all[PARPY_MAX_ARGS] = {args[0]};
    Py_ssize_t nb = PyTuple_GET_SIZE(ko->bound);
    for (Py_ssize_t i = 0; i < nb; i++) {
        all[1 + i] = PyTuple_GET_ITEM(ko->bound, i);
    }
    return parse_args(ko->kernel, item, all, 1 + nb, NULL);
}

/* ---- one item ----------------------------------------------------------- */

typedef struct {
    const parpy_kernel *kernel;
    void *item;
    int nthreads;
    atomic_int cancel; /* set if the wait for it is interrupted */
    int code;          /* compute's, or PARPY_CANCELLED */
} one_call;

static void
one_call_body(void *arg, int team)
{
    one_call *c = arg;
    parpy_ctx ctx = {{&c->cancel, NULL, NULL}};
    if (!team) {
        c->code = parpy_cancelled(&ctx) ? PARPY_CANCELLED : c->kernel->compute(c->item, &ctx);
        return;
    }
    int code = c->kernel->compute_split(c->item, &ctx, c->nthreads);
    if (parpy_team_thread() == 0) {
        c->code = code;
    }
}

int
parpy_call_threads(const parpy_kernel *kernel, const void *item, PyObject *workers)
{
    int n = 0;
    if (workers != NULL && parpy_count_option(workers, "workers", &n) < 0) {
        return -1;
    }
    return kernel->split_threads(item, n > 0 ? n : parpy_default_threads());
}

PyObject *
parpy_run_one(parpy_state *st, const parpy_kernel *kernel, void *item, int nthreads)
{
    one_call c = {.kernel = kernel, .item = item, .nthreads = nthreads, .code = PARPY_CANCELLED};
    atomic_init(&c.cancel, 0);
    parpy_team_job job = {
        .body = one_call_body,
        .arg = &c,
        .nthreads = nthreads,
        .cancel = &c.cancel,
    };
    int interrupted = parpy_team_run(&job, kernel->cost(item), PARPY_CALL_RELEASE_NS) < 0;
    if (interrupted || c.code != PARPY_OK) {
        if (!interrupted) {
            parpy_raise_code(st, kernel, item, c.code);
        }
        if (kernel->release != NULL) {
            kernel->release(item);
        }
        return NULL;
    }
    PyObject *value = kernel->build(item);
    if (value == NULL) {
        char who[96];
        snprintf(who, sizeof(who), "parpy.%s", kernel->name);
        parpy_name_memory_error(who, "its result");
    }
    return value;
}

/* ---- values ------------------------------------------------------------- */

int
parpy_kernel_takes(PyObject *kernel, const parpy_value_type *output)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)kernel;
    Py_ssize_t nb = ko->bound != NULL ? PyTuple_GET_SIZE(ko->bound) : 0;
    return output != NULL && ko->kernel->input == output && 1 + nb >= ko->kernel->min_args;
}

int
parpy_take(PyObject *kernel, void *item, parpy_value *value)
{
    parpy_KernelObject *ko = (parpy_KernelObject *)kernel;
    if (ko->template != NULL) {
        memcpy(item, ko->template, ko->kernel->item_size);
    }
    else {
        memset(item, 0, ko->kernel->item_size);
    }
    return ko->kernel->take(item, value);
}

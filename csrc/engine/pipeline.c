/* parpy._core.PipelineRun: one run of a native pipeline (parpy.Pipeline).
 *
 * Items move in chunks through rings (ring.c): ring k feeds stage k, ring
 * S (the last) feeds the consumer. Every thread is a Python thread started
 * by parpy/pipeline/_native.py: one runs feed(iterator), each stage worker runs
 * work(k), the consumer calls next() for the next chunk's results.
 *
 * A chunk always arrives in the form its stage computes on, so that a
 * native stage never needs the GIL: whoever holds the GIL converts. The
 * feeder and Python stages parse items for a native stage after them; a
 * native stage gives its results to a native stage after it as C values
 * (give, then the next kernel's take), or leaves them computed for the
 * Python stage or the consumer after it to build.
 *
 * Bounds: the feeder takes a token per item before it reads it from the
 * input, and the consumer returns them when it asks for the chunk after;
 * at most maxsize items are in flight, the reorder buffer included. The
 * rings hold a few chunks each (backpressure between stages).
 *
 * Errors: the first one (a stage's, the input's, a kernel's code) is kept
 * with a note naming the stage and the item's position; it stops the run:
 * every ring and the token gate wake their waiters, computing kernels see
 * the stop flag. next() raises it. Chunks left anywhere are freed by
 * close() (or dealloc) once the threads are gone.
 */
#include "engine/pipeline.h"

#include "engine/call.h"
#include "parpy_state.h"
#include "runtime/clock.h"
#include "runtime/errors.h"
#include "runtime/ring.h"
#include "runtime/wait.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FLUSH_NS        1000000LL /* a chunk the input is slow to fill leaves after this */
#define CHUNK_TARGET_NS 2000000.0 /* a chunk's time at the slowest stage, once measured */

enum {
    FORM_OBJ,  /* PyObject * (strong references) */
    FORM_ITEM, /* items of stage `at`, parsed or taken, not computed */
    FORM_DONE, /* items of stage `at`, computed, not built */
};

typedef struct {
    uint64_t seq;
    Py_ssize_t first; /* input position of slot 0 */
    Py_ssize_t n;
    int form;
    int at;
    int parsed; /* ITEM/DONE: the items came from parse (release needs the GIL) */
    unsigned char *data;
} chunk;

typedef struct {
    PyObject *func; /* strong until close() */
    PyObject *name; /* str */
    const parpy_kernel *kernel;
    size_t slot; /* bytes of one of its items, aligned */
    int workers;
    int gives; /* native, and the next stage takes its output as a C value */
    int next_native;
    atomic_int alive; /* workers still in work() */
    atomic_ullong items_in, items_out, busy_ns, blocked_in_ns, blocked_out_ns;
} stage;

typedef struct {
    PyObject_HEAD
    int nstages;
    stage *stages;
    parpy_ring *rings; /* nstages + 1 */
    int nrings;        /* initialised */
    int ordered;
    size_t maxsize;
    size_t chunk_max;

    atomic_int stop;
    PyObject *error;           /* the error of the lowest position (GIL) */
    Py_ssize_t error_position; /* its item's; -1: given to stop(), never replaced */

    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    size_t inflight; /* tokens taken, under gate_mu */
    int gate_ready;

    /* the consumer's */
    uint64_t next_seq;
    chunk **reorder; /* seq % reorder_cap */
    size_t reorder_cap;
    size_t handed; /* items of the chunk returned last, returned to the gate at the next call */
    int ended;

    atomic_ullong done;
    atomic_ullong input_blocked_ns;
    int64_t t_start;
    atomic_llong t_end; /* 0 while running */
    int closed;
} run_object;

static void
add_ns(atomic_ullong *counter, int64_t since)
{
    atomic_fetch_add_explicit(counter, (unsigned long long)(parpy_now_ns() - since),
                              memory_order_relaxed);
}

static size_t
slot_size(const run_object *r, const chunk *c)
{
    return c->form == FORM_OBJ ? sizeof(PyObject *) : r->stages[c->at].slot;
}

static void *
slot_at(const run_object *r, const chunk *c, Py_ssize_t i)
{
    return c->data + (size_t)i * slot_size(r, c);
}

/* Made before this process forked: its threads, chunks and locks are the
   parent's. It is never locked or freed here, and its methods raise. */
static int
inherited(const run_object *r)
{
    return r->nrings > 0 && parpy_ring_inherited(&r->rings[0]);
}

static int
check_owned(const run_object *r)
{
    return r->nrings > 0 ? parpy_ring_check_owned(&r->rings[0], "this pipeline run") : 0;
}

/* ---- stopping ------------------------------------------------------------- */

/* Any thread, GIL or not: wakes every wait of the run. */
static void
run_stop(run_object *r)
{
    atomic_store(&r->stop, 1);
    for (int k = 0; k < r->nrings; k++) {
        parpy_ring_stop(&r->rings[k]);
    }
    if (r->gate_ready && !inherited(r)) {
        pthread_mutex_lock(&r->gate_mu);
        pthread_cond_broadcast(&r->gate_cv);
        pthread_mutex_unlock(&r->gate_mu);
    }
}

/* GIL held, an exception raised: keeps it as the run's error, with a note,
   if it is the first or of a lower position than the one kept (an item
   already in a stage when the run stopped may still fail), and stops the
   run. stage < 0: the input iterator. */
static void
fail(run_object *r, int at, Py_ssize_t position)
{
    PyObject *exc = parpy_fetch_exception();
    if (r->error == NULL ? !atomic_load(&r->stop) : position < r->error_position) {
        PyObject *note =
            at < 0 ? PyUnicode_FromFormat(
                         "parpy.Pipeline: the input iterator failed reading item %zd", position)
                   : PyUnicode_FromFormat("parpy.Pipeline: stages[%d] (%U) failed on item %zd", at,
                                          r->stages[at].name, position);
        PyObject *res = note ? PyObject_CallMethod(exc, "add_note", "O", note) : NULL;
        if (res == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(res);
        Py_XDECREF(note);
        Py_XSETREF(r->error, exc);
        r->error_position = position;
    }
    else {
        Py_DECREF(exc);
    }
    run_stop(r);
}

/* ---- chunks --------------------------------------------------------------- */

static chunk *
chunk_new(size_t n, size_t slot)
{
    chunk *c = calloc(1, sizeof(chunk));
    if (c != NULL) {
        c->data = calloc(n ? n : 1, slot);
        if (c->data == NULL) {
            free(c);
            c = NULL;
        }
    }
    return c;
}

/* Whether freeing slots [from, to) of c needs the GIL. */
static int
needs_gil(const run_object *r, const chunk *c)
{
    return c->form == FORM_OBJ || (c->parsed && r->stages[c->at].kernel->release != NULL);
}

/* Releases slots [from, to) of c (the GIL held if needs_gil). */
static void
release_slots(run_object *r, chunk *c, Py_ssize_t from, Py_ssize_t to)
{
    if (c->form == FORM_OBJ) {
        for (Py_ssize_t i = from; i < to; i++) {
            Py_XDECREF(*(PyObject **)slot_at(r, c, i));
        }
        return;
    }
    const parpy_kernel *k = r->stages[c->at].kernel;
    if (k->release != NULL) {
        for (Py_ssize_t i = from; i < to; i++) {
            k->release(slot_at(r, c, i));
        }
    }
}

static void
chunk_free(run_object *r, chunk *c)
{
    release_slots(r, c, 0, c->n);
    free(c->data);
    free(c);
}

/* Without the GIL (*save is the thread's state): frees c, taking the GIL
   only if it must. */
static void
chunk_free_nogil(run_object *r, chunk *c, PyThreadState **save)
{
    if (needs_gil(r, c)) {
        PyEval_RestoreThread(*save);
        chunk_free(r, c);
        *save = PyEval_SaveThread();
    }
    else {
        chunk_free(r, c);
    }
}

/* ---- conversions (each leaves c consistent, also when it fails) ----------- */

/* GIL held. OBJ -> items of stage `to` by parse. On failure the error is
   kept (fail) and -1 returned; c then holds what is left to free. */
static int
parse_into(run_object *r, chunk *c, int to)
{
    stage *s = &r->stages[to];
    unsigned char *data = calloc(c->n ? (size_t)c->n : 1, s->slot);
    if (data == NULL) {
        PyErr_NoMemory();
        fail(r, to, c->first);
        return -1;
    }
    Py_ssize_t i = 0;
    for (; i < c->n; i++) {
        PyObject **obj = (PyObject **)slot_at(r, c, i);
        if (parpy_parse_call(s->func, data + (size_t)i * s->slot, obj, 1, NULL) < 0) {
            break;
        }
        Py_CLEAR(*obj);
    }
    if (i < c->n) {
        fail(r, to, c->first + i);
        const parpy_kernel *k = s->kernel;
        for (Py_ssize_t j = 0; k->release != NULL && j < i; j++) {
            k->release(data + (size_t)j * s->slot);
        }
        free(data);
        return -1; /* c still holds its objects (the parsed ones cleared) */
    }
    free(c->data);
    c->data = data;
    c->form = FORM_ITEM;
    c->at = to;
    c->parsed = 1;
    return 0;
}

/* GIL held. DONE -> OBJ by build. */
static int
build_objects(run_object *r, chunk *c)
{
    const parpy_kernel *k = r->stages[c->at].kernel;
    PyObject **objs = calloc(c->n ? (size_t)c->n : 1, sizeof(PyObject *));
    if (objs == NULL) {
        PyErr_NoMemory();
        fail(r, c->at, c->first);
        return -1;
    }
    for (Py_ssize_t i = 0; i < c->n; i++) {
        objs[i] = k->build(slot_at(r, c, i)); /* consumes the item */
        if (objs[i] == NULL) {
            fail(r, c->at, c->first + i);
            release_slots(r, c, i + 1, c->n);
            for (Py_ssize_t j = 0; j < i; j++) {
                Py_DECREF(objs[j]);
            }
            free(objs);
            c->n = 0; /* nothing left */
            return -1;
        }
    }
    free(c->data);
    c->data = (unsigned char *)objs;
    c->form = FORM_OBJ;
    return 0;
}

/* ---- the stages ----------------------------------------------------------- */

/* No GIL. Computes an ITEM chunk of native stage k, then gives it on to the
   next native stage or leaves it DONE. Returns 0, or -1 when the run ends
   (c freed). */
static int
native_step(run_object *r, int k, chunk *c, PyThreadState **save)
{
    stage *s = &r->stages[k];
    const parpy_kernel *kern = s->kernel;
    parpy_ctx ctx = {{&r->stop, NULL, NULL}};
    for (Py_ssize_t i = 0; i < c->n; i++) {
        int code = kern->compute(slot_at(r, c, i), &ctx);
        if (code != PARPY_OK) {
            PyEval_RestoreThread(*save);
            if (!(code == PARPY_CANCELLED && atomic_load(&r->stop))) {
                parpy_raise_code(parpy_state_of(Py_TYPE(r)), kern, slot_at(r, c, i), code);
                fail(r, k, c->first + i);
            }
            chunk_free(r, c);
            *save = PyEval_SaveThread();
            return -1;
        }
    }
    if (!s->gives) {
        c->form = FORM_DONE;
        if (!s->next_native) {
            return 0; /* built by the Python stage or the consumer */
        }
        /* a kernel that cannot take this output: through Python objects */
        PyEval_RestoreThread(*save);
        int rc = build_objects(r, c) == 0 && parse_into(r, c, k + 1) == 0 ? 0 : -1;
        if (rc < 0) {
            chunk_free(r, c);
        }
        *save = PyEval_SaveThread();
        return rc;
    }
    stage *t = &r->stages[k + 1];
    unsigned char *data = calloc(c->n ? (size_t)c->n : 1, t->slot);
    if (data == NULL) {
        PyEval_RestoreThread(*save);
        PyErr_NoMemory();
        fail(r, k, c->first);
        chunk_free(r, c);
        *save = PyEval_SaveThread();
        return -1;
    }
    int parsed = c->parsed && kern->release != NULL; /* the release after give needs the GIL */
    if (parsed) {
        PyEval_RestoreThread(*save);
    }
    Py_ssize_t i = 0;
    int code = PARPY_OK;
    for (; i < c->n; i++) {
        void *item = slot_at(r, c, i);
        parpy_value value;
        kern->give(item, &value);
        if (kern->release != NULL) {
            kern->release(item);
        }
        code = parpy_take(t->func, data + (size_t)i * t->slot, &value);
        if (code != PARPY_OK) {
            break;
        }
    }
    if (parsed) {
        *save = PyEval_SaveThread();
    }
    if (code != PARPY_OK) {
        PyEval_RestoreThread(*save);
        parpy_raise_code(parpy_state_of(Py_TYPE(r)), t->kernel, NULL, code);
        fail(r, k + 1, c->first + i);
        release_slots(r, c, i + 1, c->n); /* computed, not given */
        for (Py_ssize_t j = 0; t->kernel->release != NULL && j < i; j++) {
            t->kernel->release(data + (size_t)j * t->slot);
        }
        free(data);
        c->n = 0;
        chunk_free(r, c);
        *save = PyEval_SaveThread();
        return -1;
    }
    free(c->data);
    c->data = data;
    c->form = FORM_ITEM;
    c->at = k + 1;
    c->parsed = 0;
    return 0;
}

/* No GIL on entry and exit. Calls Python stage k on every item of c
   (built first if it comes computed), then parses for a native stage
   after it. Returns 0, or -1 when the run ends (c freed). */
static int
python_step(run_object *r, int k, chunk *c, PyThreadState **save)
{
    stage *s = &r->stages[k];
    PyEval_RestoreThread(*save);
    int ok = c->form == FORM_OBJ || build_objects(r, c) == 0;
    for (Py_ssize_t i = 0; ok && i < c->n; i++) {
        if (atomic_load_explicit(&r->stop, memory_order_relaxed)) {
            ok = 0;
            break;
        }
        PyObject **obj = (PyObject **)slot_at(r, c, i);
        PyObject *result = PyObject_CallOneArg(s->func, *obj);
        if (result == NULL) {
            fail(r, k, c->first + i);
            ok = 0;
            break;
        }
        Py_SETREF(*obj, result);
    }
    if (ok && s->next_native) {
        ok = parse_into(r, c, k + 1) == 0;
    }
    if (!ok) {
        chunk_free(r, c);
    }
    *save = PyEval_SaveThread();
    return ok ? 0 : -1;
}

/* ---- the tokens ------------------------------------------------------------ */

/* No GIL. Takes n tokens; returns 0 once stopped. */
static int
gate_take(run_object *r, size_t n)
{
    int ok;
    pthread_mutex_lock(&r->gate_mu);
    while (!atomic_load(&r->stop) && r->inflight + n > r->maxsize) {
        pthread_cond_wait(&r->gate_cv, &r->gate_mu);
    }
    ok = !atomic_load(&r->stop);
    if (ok) {
        r->inflight += n;
    }
    pthread_mutex_unlock(&r->gate_mu);
    return ok;
}

static void
gate_give(run_object *r, size_t n)
{
    if (n == 0) {
        return;
    }
    pthread_mutex_lock(&r->gate_mu);
    r->inflight -= n;
    pthread_cond_signal(&r->gate_cv);
    pthread_mutex_unlock(&r->gate_mu);
}

/* The next chunk's size: about CHUNK_TARGET_NS at the slowest stage once
   every stage has measured its items, one item until then (items of unknown
   cost, a fetch of a web page say, spread over every worker); when the input's
   length is known (remaining >= 0), no more than a share of what is left
   for each worker of the slowest stage, so that its workers end together. */
static size_t
next_chunk_size(run_object *r, Py_ssize_t remaining)
{
    double slowest = 0.0;
    int workers = 1;
    for (int k = 0; k < r->nstages; k++) {
        stage *s = &r->stages[k];
        unsigned long long items = atomic_load_explicit(&s->items_out, memory_order_relaxed);
        if (items == 0) {
            slowest = -1.0;
            break;
        }
        double per_item =
            (double)atomic_load_explicit(&s->busy_ns, memory_order_relaxed) / (double)items;
        if (per_item / s->workers > slowest / workers) {
            slowest = per_item;
            workers = s->workers;
        }
    }
    size_t size = slowest < 0   ? 1
                  : slowest > 0 ? (size_t)(CHUNK_TARGET_NS / slowest)
                                : r->chunk_max;
    if (remaining >= 0 && size > (size_t)remaining / (2 * (size_t)workers)) {
        size = (size_t)remaining / (2 * (size_t)workers);
    }
    return size < 1 ? 1 : size > r->chunk_max ? r->chunk_max : size;
}

/* ---- methods --------------------------------------------------------------- */

PyDoc_STRVAR(feed_doc,
             "feed($self, iterator, total=None, /)\n--\n\n"
             "Read the input into the pipeline until it ends or the run stops\n"
             "(on a thread of its own); total, when known, is its length.");

static PyObject *
run_feed(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    run_object *r = (run_object *)self;
    Py_ssize_t total = -1;
    if (check_owned(r) < 0) {
        return NULL;
    }
    if (nargs < 1 || nargs > 2 ||
        (nargs == 2 && args[1] != Py_None &&
         ((total = PyLong_AsSsize_t(args[1])) < 0 || PyErr_Occurred()))) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "feed(iterator, total=None): total an int >= 0");
        }
        return NULL;
    }
    PyObject *iterator = args[0];
    stage *first = &r->stages[0];
    int native = first->kernel != NULL;
    Py_ssize_t position = 0;
    uint64_t seq = 0;
    int ended = 0;
    while (!ended && !atomic_load(&r->stop)) {
        size_t size = next_chunk_size(r, total < 0 ? -1 : total - position);
        int64_t t0 = parpy_now_ns();
        int ok;
        Py_BEGIN_ALLOW_THREADS
            ok = gate_take(r, size);
        Py_END_ALLOW_THREADS
        add_ns(&r->input_blocked_ns, t0);
        if (!ok) {
            break;
        }
        chunk *c = chunk_new(size, native ? first->slot : sizeof(PyObject *));
        if (c == NULL) {
            PyErr_NoMemory();
            fail(r, -1, position);
            break;
        }
        c->seq = seq++;
        c->first = position;
        c->form = native ? FORM_ITEM : FORM_OBJ;
        c->parsed = native;
        int64_t start = parpy_now_ns();
        while ((size_t)c->n < size) {
            PyObject *obj = PyIter_Next(iterator);
            if (obj == NULL) {
                if (PyErr_Occurred()) {
                    fail(r, -1, position);
                }
                ended = 1;
                break;
            }
            if (native) {
                int rc = parpy_parse_call(first->func, slot_at(r, c, c->n), &obj, 1, NULL);
                Py_DECREF(obj);
                if (rc < 0) {
                    fail(r, 0, position);
                    ended = 1;
                    break;
                }
            }
            else {
                *(PyObject **)slot_at(r, c, c->n) = obj;
            }
            c->n++;
            position++;
            if (parpy_now_ns() - start > FLUSH_NS) {
                break;
            }
        }
        gate_give(r, size - (size_t)c->n);
        if (c->n == 0 || atomic_load(&r->stop)) {
            chunk_free(r, c);
            continue;
        }
        t0 = parpy_now_ns();
        int rc;
        Py_BEGIN_ALLOW_THREADS
            rc = parpy_ring_push(&r->rings[0], c, -1);
        Py_END_ALLOW_THREADS
        add_ns(&r->input_blocked_ns, t0);
        if (rc != PARPY_RING_OK) {
            chunk_free(r, c);
        }
    }
    parpy_ring_close(&r->rings[0]);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(work_doc,
             "work($self, k, /)\n--\n\n"
             "Be a worker of stage k until its input ends or the run stops.");

static PyObject *
run_work(PyObject *self, PyObject *arg)
{
    run_object *r = (run_object *)self;
    if (check_owned(r) < 0) {
        return NULL;
    }
    long k = PyLong_AsLong(arg);
    if (k < 0 || k >= r->nstages) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_IndexError, "no such stage");
        }
        return NULL;
    }
    stage *s = &r->stages[k];
    parpy_ring *in = &r->rings[k], *out = &r->rings[k + 1];
    PyThreadState *save = PyEval_SaveThread();
    for (;;) {
        void *got;
        int64_t t0 = parpy_now_ns();
        int rc = parpy_ring_pop(in, &got, -1);
        add_ns(&s->blocked_in_ns, t0);
        if (rc != PARPY_RING_OK) {
            break;
        }
        chunk *c = got;
        atomic_fetch_add_explicit(&s->items_in, (unsigned long long)c->n, memory_order_relaxed);
        t0 = parpy_now_ns();
        rc =
            s->kernel != NULL ? native_step(r, (int)k, c, &save) : python_step(r, (int)k, c, &save);
        add_ns(&s->busy_ns, t0);
        if (rc < 0) {
            break;
        }
        atomic_fetch_add_explicit(&s->items_out, (unsigned long long)c->n, memory_order_relaxed);
        t0 = parpy_now_ns();
        rc = parpy_ring_push(out, c, -1);
        add_ns(&s->blocked_out_ns, t0);
        if (rc != PARPY_RING_OK) {
            chunk_free_nogil(r, c, &save);
            break;
        }
    }
    if (atomic_fetch_sub(&s->alive, 1) == 1) {
        parpy_ring_close(out); /* the stage's last worker: its output ends */
    }
    PyEval_RestoreThread(save);
    Py_RETURN_NONE;
}

/* GIL held. Files c in the reorder buffer. Returns 0, or -1 (MemoryError). */
static int
reorder_put(run_object *r, chunk *c)
{
    if (c->seq - r->next_seq >= r->reorder_cap) {
        size_t cap = r->reorder_cap ? r->reorder_cap : 16;
        while (c->seq - r->next_seq >= cap) {
            cap *= 2;
        }
        chunk **slots = calloc(cap, sizeof(chunk *));
        if (slots == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < r->reorder_cap; i++) {
            chunk *old = r->reorder[i];
            if (old != NULL) {
                slots[old->seq % cap] = old;
            }
        }
        free(r->reorder);
        r->reorder = slots;
        r->reorder_cap = cap;
    }
    r->reorder[c->seq % r->reorder_cap] = c;
    return 0;
}

static chunk *
reorder_take(run_object *r)
{
    if (r->reorder_cap == 0) {
        return NULL;
    }
    chunk **slot = &r->reorder[r->next_seq % r->reorder_cap];
    chunk *c = *slot;
    if (c != NULL && c->seq == r->next_seq) {
        *slot = NULL;
        r->next_seq++;
        return c;
    }
    return NULL;
}

/* A slice of the wait for every stage worker to leave work() (no GIL):
   they are polled every millisecond. */
static int
workers_gone(void *arg, int64_t slice_ns)
{
    run_object *r = arg;
    int64_t until = parpy_now_ns() + slice_ns;
    for (;;) {
        int alive = 0;
        for (int k = 0; k < r->nstages; k++) {
            alive += atomic_load(&r->stages[k].alive);
        }
        if (alive == 0) {
            return 1;
        }
        if (parpy_now_ns() >= until) {
            return 0;
        }
        struct timespec pause = {0, 1000000L};
        nanosleep(&pause, NULL);
    }
}

/* GIL held, the run stopped: waits interruptibly until every stage worker
   has left work(), so that the items in a stage at the stop have failed or
   not before the run's error is chosen. Returns 0, or -1 with the signal
   handlers' exception set. */
static int
wait_workers(run_object *r)
{
    return parpy_wait_interruptibly(workers_gone, r);
}

/* GIL held: raises the run's error (which stays kept for stats): that of
   the lowest position, once every worker has left. */
static PyObject *
raise_error(run_object *r)
{
    if (r->error != NULL && r->error_position >= 0) {
        run_stop(r);
        if (wait_workers(r) < 0) {
            return NULL;
        }
    }
    if (r->error != NULL) {
        parpy_restore_exception(Py_NewRef(r->error));
    }
    else {
        PyErr_SetString(PyExc_RuntimeError, "the pipeline was stopped during this run");
    }
    return NULL;
}

/* The consumer's pop from the last ring, waited for in slices. */
typedef struct {
    parpy_ring *ring;
    void *item;
    int rc;
} ring_pop;

static int
pop_slice(void *arg, int64_t slice_ns)
{
    ring_pop *pop = arg;
    pop->rc = parpy_ring_pop(pop->ring, &pop->item, slice_ns);
    return pop->rc != PARPY_RING_TIMEOUT;
}

PyDoc_STRVAR(next_doc,
             "next($self, /)\n--\n\n"
             "The results of the next chunk (a list), None once the input is\n"
             "through; raises the run's error. Waits interruptibly.");

static PyObject *
run_next(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    run_object *r = (run_object *)self;
    if (check_owned(r) < 0) {
        return NULL;
    }
    gate_give(r, r->handed);
    r->handed = 0;
    if (r->ended) {
        return r->error != NULL ? raise_error(r) : Py_NewRef(Py_None);
    }
    if (atomic_load(&r->stop)) { /* failed, or stopped: nothing more comes out */
        return raise_error(r);
    }
    parpy_ring *last = &r->rings[r->nstages];
    chunk *c = r->ordered ? reorder_take(r) : NULL;
    while (c == NULL) {
        if (r->error != NULL) {
            return raise_error(r);
        }
        ring_pop pop = {last, NULL, 0};
        if (parpy_wait_interruptibly(pop_slice, &pop) < 0) {
            /* Ctrl-C stops the run here: no worker takes another item,
               whatever the caller does next. */
            run_stop(r);
            if (atomic_load(&r->t_end) == 0) {
                atomic_store(&r->t_end, parpy_now_ns());
            }
            return NULL;
        }
        void *got = pop.item;
        int rc = pop.rc;
        if (rc == PARPY_RING_CLOSED) {
            r->ended = 1;
            atomic_store(&r->t_end, parpy_now_ns());
            return r->error != NULL ? raise_error(r) : Py_NewRef(Py_None);
        }
        if (rc != PARPY_RING_OK) {
            return raise_error(r);
        }
        c = got;
        if (r->ordered) {
            if (reorder_put(r, c) < 0) {
                fail(r, r->nstages - 1, c->first);
                chunk_free(r, c);
                return raise_error(r);
            }
            c = reorder_take(r);
        }
    }
    if (c->form == FORM_DONE && build_objects(r, c) < 0) {
        chunk_free(r, c);
        return raise_error(r);
    }
    PyObject *list = PyList_New(c->n);
    if (list == NULL) {
        fail(r, r->nstages - 1, c->first);
        chunk_free(r, c);
        return raise_error(r);
    }
    for (Py_ssize_t i = 0; i < c->n; i++) {
        PyObject **obj = (PyObject **)slot_at(r, c, i);
        PyList_SET_ITEM(list, i, *obj);
        *obj = NULL;
    }
    r->handed = (size_t)c->n;
    atomic_fetch_add(&r->done, (unsigned long long)c->n);
    chunk_free(r, c);
    return list;
}

PyDoc_STRVAR(stop_doc,
             "stop($self, error=None, /)\n--\n\n"
             "Stop the run: every wait wakes, every stage ends. error, if given\n"
             "and the run has none, is what next() raises.");

static PyObject *
run_stop_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    run_object *r = (run_object *)self;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "stop(error=None)");
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None && r->error == NULL && !r->ended &&
        !atomic_load(&r->stop)) {
        r->error = Py_NewRef(args[0]);
        r->error_position = -1;
    }
    run_stop(r);
    if (atomic_load(&r->t_end) == 0) {
        atomic_store(&r->t_end, parpy_now_ns());
    }
    Py_RETURN_NONE;
}

static void
drop_chunk(void *item, void *arg)
{
    chunk_free(arg, item);
}

/* GIL held, no thread in feed or work: frees every chunk left. */
static void
run_clear_chunks(run_object *r)
{
    if (inherited(r)) { /* the parent's: left as they are */
        return;
    }
    for (int k = 0; k < r->nrings; k++) {
        parpy_ring_drain(&r->rings[k], drop_chunk, r);
    }
    for (size_t i = 0; i < r->reorder_cap; i++) {
        if (r->reorder[i] != NULL) {
            chunk_free(r, r->reorder[i]);
            r->reorder[i] = NULL;
        }
    }
}

PyDoc_STRVAR(close_doc,
             "close($self, /)\n--\n\n"
             "After the threads are gone: free what is left, drop the stage\n"
             "functions and the error. The figures stay.");

static PyObject *
run_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    run_object *r = (run_object *)self;
    if (!r->closed) {
        r->closed = 1;
        run_stop(r);
        if (atomic_load(&r->t_end) == 0) {
            atomic_store(&r->t_end, parpy_now_ns());
        }
        run_clear_chunks(r);
        for (int k = 0; k < r->nstages; k++) {
            Py_CLEAR(r->stages[k].func);
        }
        Py_CLEAR(r->error); /* raised by now; its frames hold the input */
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(counters_doc,
             "counters($self, /)\n--\n\n"
             "(wall s, running, input blocked s, ((items in, items out, busy s,\n"
             "blocked in s, blocked out s) per stage)).");

static double
seconds(atomic_ullong *ns)
{
    return (double)atomic_load_explicit(ns, memory_order_relaxed) * 1e-9;
}

static PyObject *
run_counters(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    run_object *r = (run_object *)self;
    int64_t end = atomic_load(&r->t_end);
    int running = end == 0;
    double wall = (double)((running ? parpy_now_ns() : end) - r->t_start) * 1e-9;
    PyObject *rows = PyTuple_New(r->nstages);
    if (rows == NULL) {
        return NULL;
    }
    for (int k = 0; k < r->nstages; k++) {
        stage *s = &r->stages[k];
        PyObject *row = Py_BuildValue("(KKddd)", atomic_load(&s->items_in),
                                      atomic_load(&s->items_out), seconds(&s->busy_ns),
                                      seconds(&s->blocked_in_ns), seconds(&s->blocked_out_ns));
        if (row == NULL) {
            Py_DECREF(rows);
            return NULL;
        }
        PyTuple_SET_ITEM(rows, k, row);
    }
    return Py_BuildValue("(dOdN)", wall, running ? Py_True : Py_False,
                         seconds(&r->input_blocked_ns), rows);
}

static PyObject *
run_get_done(PyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(atomic_load(&((run_object *)self)->done));
}

/* ---- construction ------------------------------------------------------------ */

/* PipelineRun(stages, maxsize, ordered): stages a tuple of (func, workers,
   name). */
static PyObject *
run_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"stages", "maxsize", "ordered", NULL};
    PyObject *spec;
    Py_ssize_t maxsize;
    int ordered;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!np:PipelineRun", kwlist, &PyTuple_Type, &spec,
                                     &maxsize, &ordered)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(spec);
    if (n < 1 || n > 1000 || maxsize < 1) {
        PyErr_SetString(PyExc_ValueError, "PipelineRun: 1 to 1000 stages, maxsize >= 1");
        return NULL;
    }
    parpy_state *st = parpy_state_of(type);
    run_object *r = (run_object *)type->tp_alloc(type, 0);
    if (r == NULL) {
        return NULL;
    }
    r->nstages = (int)n;
    r->ordered = ordered;
    r->maxsize = (size_t)maxsize;
    r->t_start = parpy_now_ns();
    r->stages = PyMem_Calloc((size_t)n, sizeof(stage));
    r->rings = PyMem_Calloc((size_t)n + 1, sizeof(parpy_ring));
    if (r->stages == NULL || r->rings == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    int total = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        stage *s = &r->stages[k];
        PyObject *func, *name;
        int workers;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(spec, k), "OiU:PipelineRun stage", &func, &workers,
                              &name)) {
            goto error;
        }
        if (workers < 1 || workers > 4096) {
            PyErr_SetString(PyExc_ValueError, "PipelineRun: 1 to 4096 workers a stage");
            goto error;
        }
        s->func = Py_NewRef(func);
        s->name = Py_NewRef(name);
        s->workers = workers;
        atomic_store(&s->alive, workers);
        total += workers;
        if (Py_IS_TYPE(func, st->kernel_type)) {
            s->kernel = ((parpy_KernelObject *)func)->kernel;
            size_t align = _Alignof(max_align_t);
            s->slot = (s->kernel->item_size + align - 1) / align * align;
        }
    }
    for (Py_ssize_t k = 0; k + 1 < n; k++) {
        stage *s = &r->stages[k], *t = &r->stages[k + 1];
        s->next_native = t->kernel != NULL;
        s->gives = s->kernel != NULL && t->kernel != NULL && s->kernel->give != NULL &&
                   parpy_kernel_takes(t->func, s->kernel->output);
    }
    for (int k = 0; k <= n; k++) {
        /* a few chunks for each worker of the stage it feeds (the consumer: 8) */
        size_t capacity = k < n ? 4 * (size_t)r->stages[k].workers + 2 : 8;
        if (parpy_ring_init(&r->rings[k], capacity) != 0) {
            PyErr_NoMemory();
            goto error;
        }
        r->nrings++;
    }
    if (pthread_mutex_init(&r->gate_mu, NULL) != 0 || pthread_cond_init(&r->gate_cv, NULL) != 0) {
        PyErr_NoMemory();
        goto error;
    }
    r->gate_ready = 1;
    /* chunks small enough that every worker, the feeder and the consumer
       can each hold two within the bound */
    r->chunk_max = r->maxsize / (2 * ((size_t)total + 2));
    if (r->chunk_max < 1) {
        r->chunk_max = 1;
    }
    if (r->chunk_max > 4096) {
        r->chunk_max = 4096;
    }
    return (PyObject *)r;
error:
    Py_DECREF(r);
    return NULL;
}

static void
run_dealloc(PyObject *self)
{
    run_object *r = (run_object *)self;
    PyTypeObject *tp = Py_TYPE(self);
    run_clear_chunks(r);
    for (int k = 0; k < r->nrings; k++) {
        parpy_ring_destroy(&r->rings[k]);
    }
    if (r->gate_ready && !inherited(r)) {
        pthread_mutex_destroy(&r->gate_mu);
        pthread_cond_destroy(&r->gate_cv);
    }
    for (int k = 0; r->stages != NULL && k < r->nstages; k++) {
        Py_XDECREF(r->stages[k].func);
        Py_XDECREF(r->stages[k].name);
    }
    PyMem_Free(r->stages);
    PyMem_Free(r->rings);
    free(r->reorder);
    Py_XDECREF(r->error);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef run_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))run_feed, METH_FASTCALL, feed_doc},
    {"work", run_work, METH_O, work_doc},
    {"next", run_next, METH_NOARGS, next_doc},
    {"stop", (PyCFunction)(void (*)(void))run_stop_method, METH_FASTCALL, stop_doc},
    {"close", run_close, METH_NOARGS, close_doc},
    {"counters", run_counters, METH_NOARGS, counters_doc},
    {NULL, NULL, 0, NULL},
};

/* Which stages give their results to the next as C values. */
static PyObject *
run_get_gives(PyObject *self, void *Py_UNUSED(closure))
{
    run_object *r = (run_object *)self;
    PyObject *t = PyTuple_New(r->nstages);
    for (int k = 0; t != NULL && k < r->nstages; k++) {
        PyTuple_SET_ITEM(t, k, PyBool_FromLong(r->stages[k].gives));
    }
    return t;
}

static PyGetSetDef run_getset[] = {
    {"done", run_get_done, NULL, "results handed out", NULL},
    {"gives", run_get_gives, NULL, "per stage: gives its results to the next as C values", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot run_slots[] = {
    {Py_tp_new, run_new},
    {Py_tp_dealloc, run_dealloc},
    {Py_tp_methods, run_methods},
    {Py_tp_getset, run_getset},
    {Py_tp_doc,
     "PipelineRun(stages, maxsize, ordered)\n--\n\n"
     "One run of a native pipeline: stages is a tuple of (func, workers, name).\n"
     "Driven by parpy/pipeline/_native.py."},
    {0, NULL},
};

static PyType_Spec run_spec = {
    .name = "parpy._core.PipelineRun",
    .basicsize = sizeof(run_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = run_slots,
};

PyTypeObject *
parpy_pipeline_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &run_spec, NULL);
}

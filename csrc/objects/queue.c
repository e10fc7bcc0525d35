/* parpy._core.Queue (parpy.Queue): queue.Queue's API on a parpy_ring.
 *
 * A multi-producer multi-consumer FIFO of Python objects for Python
 * threads. put and get take the ring's lock without giving up the GIL when
 * they need not wait; when they must, they release the GIL and wait in
 * slices, re-taking it between slices to run signal handlers, so that Ctrl-C
 * interrupts a blocked call. Between two threads taking turns (a producer
 * and a consumer of a bounded queue) every turn is a hand-off of the GIL;
 * a waiting call spins a little before it sleeps and before it asks for the
 * GIL back, so that each turn costs one wake-up, not three. The ring holds a strong reference to
 * every item in it. unfinished counts the items put and not yet marked done (task_done/join), under
 * a lock and condition of its own.
 */
#include "objects/queue.h"

#include "parpy_state.h"
#include "runtime/clock.h"
#include "runtime/errors.h"
#include "runtime/ring.h"
#include "runtime/wait.h"

#include <math.h>
#include <structmember.h>
#include <time.h>

#define SPINS     1000  /* tries (about 20-50 ns each) before a blocked call sleeps */
#define SETTLE_NS 30000 /* the most a woken call spins before it takes the GIL back */

typedef struct {
    PyObject_HEAD
    parpy_ring ring;
    Py_ssize_t maxsize; /* as given: <= 0 means unbounded */
    int is_shutdown;
    atomic_llong unfinished; /* items put and not yet marked done */
    pthread_mutex_t mu;      /* join waits on all_done under it */
    pthread_cond_t all_done;
    PyObject *weakrefs;
    PyObject *dict;        /* subclasses may add attributes */
    atomic_int blocked[2]; /* getters [0] and putters [1] waiting without the GIL */
} queue_object;

static parpy_state *
state_of(PyObject *self)
{
    return parpy_state_of(Py_TYPE(self));
}

static double
monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Parses timeout (None or a number >= 0). Returns 0 with *seconds set (-1
   for None), or -1 with an exception set. */
static int
parse_timeout(PyObject *timeout, double *seconds)
{
    if (timeout == NULL || timeout == Py_None) {
        *seconds = -1.0;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (t < 0 || isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return -1;
    }
    *seconds = t;
    return 0;
}

/* After a wait, before taking the GIL back (no GIL held). The GIL is most
   likely held by the thread on the other side, which gives it up when it
   blocks on this queue in turn; a thread that asked for it now would sleep
   until then and be woken a second time. Spin until that side is blocked,
   at most SETTLE_NS, and take the GIL awake. */
static void
settle(queue_object *self, int push)
{
    double until = monotonic() + SETTLE_NS * 1e-9;
    for (int spin = 1; atomic_load_explicit(&self->blocked[!push], memory_order_relaxed) == 0;
         spin++) {
        parpy_cpu_relax();
        if ((spin & 63) == 0 && monotonic() > until) {
            return;
        }
    }
}

/* A push of item, or a pop into *out, waited for in slices. */
typedef struct {
    queue_object *self;
    int push;
    void *item;
    void **out;
    double deadline; /* monotonic() seconds; < 0: none */
    int rc;          /* the ring's code once the wait is over */
} queue_wait;

/* A slice of a blocked put or get (no GIL). */
static int
queue_wait_slice(void *arg, int64_t slice_ns)
{
    queue_wait *w = arg;
    queue_object *self = w->self;
    int push = w->push;
    if (w->deadline >= 0) {
        double left = w->deadline - monotonic();
        if (left <= 0) {
            w->rc = PARPY_RING_TIMEOUT;
            return 1;
        }
        if (left * 1e9 < (double)slice_ns) {
            slice_ns = (int64_t)(left * 1e9) + 1;
        }
    }
    atomic_fetch_add(&self->blocked[push], 1);
    /* Spin a little before sleeping: the other side usually acts within
       microseconds of getting the GIL we just gave up, and a thread that
       slept would then be woken twice (by the queue, then by the GIL). */
    int rc = PARPY_RING_TIMEOUT;
    for (int spin = 0; spin < SPINS && rc == PARPY_RING_TIMEOUT; spin++) {
        rc = push ? parpy_ring_push(&self->ring, w->item, 0)
                  : parpy_ring_pop(&self->ring, w->out, 0);
    }
    /* Done while spinning: the other side is taking turns with this
       one, not working at its own pace. */
    int turns = rc == PARPY_RING_OK;
    if (rc == PARPY_RING_TIMEOUT) {
        rc = push ? parpy_ring_push(&self->ring, w->item, slice_ns)
                  : parpy_ring_pop(&self->ring, w->out, slice_ns);
    }
    atomic_fetch_sub(&self->blocked[push], 1);
    if (turns) {
        settle(self, push);
    }
    w->rc = rc;
    return rc != PARPY_RING_TIMEOUT;
}

/* Runs op (a ring push of item, or a pop into *out) until it is done, the
   queue is shut down, or the timeout (seconds, -1: none) passes; waits
   interruptibly (runtime/wait.h). Returns a ring code, or -1 with the
   handlers' exception set. */
static int
wait_for(queue_object *self, int push, void *item, void **out, double timeout)
{
    if (timeout == 0) { /* no wait: the GIL is kept */
        return PARPY_RING_TIMEOUT;
    }
    queue_wait w = {self, push, item, out, timeout < 0 ? -1.0 : monotonic() + timeout, 0};
    if (parpy_wait_interruptibly(queue_wait_slice, &w) < 0) {
        return -1;
    }
    return w.rc;
}

static int
raise_shutdown(queue_object *self)
{
    PyErr_SetNone(state_of((PyObject *)self)->shutdown_error);
    return -1;
}

/* ---- put and get ---------------------------------------------------------- */

static void
count_put(queue_object *self, long long n)
{
    atomic_fetch_add_explicit(&self->unfinished, n, memory_order_relaxed);
}

/* Wakes join() once no task is unfinished. */
static void
wake_joiners(queue_object *self)
{
    pthread_mutex_lock(&self->mu);
    pthread_cond_broadcast(&self->all_done);
    pthread_mutex_unlock(&self->mu);
}

/* Returns 0, or -1 with Full, ShutDown or another exception set. */
static int
put(queue_object *self, PyObject *item, int block, double timeout)
{
    if (parpy_ring_check_owned(&self->ring, "this parpy.Queue") < 0) {
        return -1;
    }
    count_put(self, 1); /* before a consumer can take it and call task_done */
    int rc = parpy_ring_push(&self->ring, Py_NewRef(item), 0);
    if (rc == PARPY_RING_TIMEOUT && block) {
        rc = wait_for(self, 1, item, NULL, timeout);
    }
    if (rc == PARPY_RING_OK) {
        return 0;
    }
    count_put(self, -1);
    Py_DECREF(item);
    if (rc == PARPY_RING_TIMEOUT) {
        PyErr_SetNone(state_of((PyObject *)self)->full_error);
    }
    else if (rc == PARPY_RING_CLOSED || rc == PARPY_RING_STOPPED) {
        raise_shutdown(self);
    }
    else if (rc == PARPY_RING_NOMEM) {
        PyErr_NoMemory();
    }
    return -1; /* or the signal handler's exception */
}

/* Returns a new reference, or NULL with Empty, ShutDown or another
   exception set. */
static PyObject *
get(queue_object *self, int block, double timeout)
{
    if (parpy_ring_check_owned(&self->ring, "this parpy.Queue") < 0) {
        return NULL;
    }
    void *item = NULL;
    int rc = parpy_ring_pop(&self->ring, &item, 0);
    if (rc == PARPY_RING_TIMEOUT && block) {
        rc = wait_for(self, 0, NULL, &item, timeout);
    }
    if (rc == PARPY_RING_OK) {
        return item; /* the ring's reference, now the caller's */
    }
    if (rc == PARPY_RING_TIMEOUT) {
        PyErr_SetNone(state_of((PyObject *)self)->empty_error);
    }
    else if (rc == PARPY_RING_CLOSED || rc == PARPY_RING_STOPPED) {
        raise_shutdown(self);
    }
    return NULL;
}

/* Fills values[0..n) from the vectorcall arguments by position, then by
   keyword (names[0..n)); what is not given stays NULL. Returns 0, or -1 with
   TypeError set. */
static int
parse_args(const char *func, const char *const *names, int n, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames, PyObject **values)
{
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", func, n,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        values[i] = args[i];
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        int slot = -1;
        for (int i = 0; i < n && slot < 0; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                slot = i;
            }
        }
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", func,
                         key);
            return -1;
        }
        if (values[slot] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", func,
                         names[slot]);
            return -1;
        }
        values[slot] = args[nargs + j];
    }
    return 0;
}

static int
as_block(PyObject *value)
{
    return value == NULL ? 1 : PyObject_IsTrue(value);
}

PyDoc_STRVAR(put_doc,
             "put($self, item, block=True, timeout=None)\n--\n\n"
             "Put an item into the queue, as queue.Queue.put.\n"
             "\n"
             "When the queue is full, wait (the GIL released; Ctrl-C interrupts) for a\n"
             "free slot.\n"
             "\n"
             "Parameters\n"
             "----------\n"
             "item : object\n"
             "    The item.\n"
             "block : bool, default True\n"
             "    False: raise queue.Full at once when there is no free slot.\n"
             "timeout : float or None, default None\n"
             "    With block, wait at most this many seconds, then raise queue.Full.\n"
             "\n"
             "Raises\n"
             "------\n"
             "queue.Full\n"
             "    If no slot became free in time.\n"
             "ShutDown\n"
             "    Once the queue is shut down.\n"
             "ValueError\n"
             "    If timeout is negative.\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

static PyObject *
queue_put(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"item", "block", "timeout"};
    queue_object *self = (queue_object *)op;
    PyObject *values[3] = {NULL, NULL, NULL};
    if (parse_args("put", names, 3, args, PyVectorcall_NARGS(nargsf), kwnames, values) < 0) {
        return NULL;
    }
    if (values[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "put() missing required argument 'item'");
        return NULL;
    }
    int block = as_block(values[1]);
    if (block < 0) {
        return NULL;
    }
    double seconds = -1.0;
    if (block && self->maxsize > 0 && parse_timeout(values[2], &seconds) < 0) {
        return NULL;
    }
    return put(self, values[0], block, seconds) < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(put_nowait_doc,
             "put_nowait($self, item)\n--\n\n"
             "Put an item without blocking: put(item, False).\n"
             "\n"
             "Parameters\n"
             "----------\n"
             "item : object\n"
             "    The item.\n"
             "\n"
             "Raises\n"
             "------\n"
             "queue.Full\n"
             "    If the queue is full.\n"
             "ShutDown\n"
             "    Once the queue is shut down.\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

static PyObject *
queue_put_nowait(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"item"};
    PyObject *item = NULL;
    if (parse_args("put_nowait", names, 1, args, PyVectorcall_NARGS(nargsf), kwnames, &item) < 0) {
        return NULL;
    }
    if (item == NULL) {
        PyErr_SetString(PyExc_TypeError, "put_nowait() missing required argument 'item'");
        return NULL;
    }
    return put((queue_object *)op, item, 0, -1.0) < 0 ? NULL : Py_NewRef(Py_None);
}

PyDoc_STRVAR(get_doc,
             "get($self, block=True, timeout=None)\n--\n\n"
             "Remove and return an item, as queue.Queue.get.\n"
             "\n"
             "When the queue is empty, wait (the GIL released; Ctrl-C interrupts) for an\n"
             "item.\n"
             "\n"
             "Parameters\n"
             "----------\n"
             "block : bool, default True\n"
             "    False: raise queue.Empty at once when there is no item.\n"
             "timeout : float or None, default None\n"
             "    With block, wait at most this many seconds, then raise queue.Empty.\n"
             "\n"
             "Returns\n"
             "-------\n"
             "object\n"
             "    The oldest item.\n"
             "\n"
             "Raises\n"
             "------\n"
             "queue.Empty\n"
             "    If no item came in time.\n"
             "ShutDown\n"
             "    Once the queue is shut down and empty.\n"
             "ValueError\n"
             "    If timeout is negative.\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

static PyObject *
queue_get(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[] = {"block", "timeout"};
    PyObject *values[2] = {NULL, NULL};
    if (parse_args("get", names, 2, args, PyVectorcall_NARGS(nargsf), kwnames, values) < 0) {
        return NULL;
    }
    int block = as_block(values[0]);
    if (block < 0) {
        return NULL;
    }
    double seconds = -1.0;
    if (block && parse_timeout(values[1], &seconds) < 0) {
        return NULL;
    }
    return get((queue_object *)op, block, seconds);
}

PyDoc_STRVAR(get_nowait_doc,
             "get_nowait($self, /)\n--\n\n"
             "Remove and return an item without blocking: get(False).\n"
             "\n"
             "Returns\n"
             "-------\n"
             "object\n"
             "    The oldest item.\n"
             "\n"
             "Raises\n"
             "------\n"
             "queue.Empty\n"
             "    If the queue is empty.\n"
             "ShutDown\n"
             "    Once the queue is shut down and empty.\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

static PyObject *
queue_get_nowait(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return get((queue_object *)op, 0, -1.0);
}

/* ---- task_done and join --------------------------------------------------- */

PyDoc_STRVAR(task_done_doc,
             "task_done($self, /)\n--\n\n"
             "Indicate that a formerly enqueued task is complete, as queue.Queue.task_done.\n"
             "\n"
             "Raises\n"
             "------\n"
             "ValueError\n"
             "    If called more times than there were items put.\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

static PyObject *
queue_task_done(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    queue_object *self = (queue_object *)op;
    if (parpy_ring_check_owned(&self->ring, "this parpy.Queue") < 0) {
        return NULL;
    }
    long long n = atomic_load(&self->unfinished);
    do {
        if (n <= 0) {
            PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&self->unfinished, &n, n - 1));
    if (n == 1) {
        wake_joiners(self);
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(join_doc,
             "join($self, /)\n--\n\n"
             "Block until every item put has been gotten and marked done.\n"
             "\n"
             "The GIL is released while it waits; Ctrl-C interrupts.\n"
             "\n"
             "Raises\n"
             "------\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

/* A slice of join's wait (no GIL). */
static int
join_wait(void *arg, int64_t slice_ns)
{
    queue_object *self = arg;
    struct timespec deadline = parpy_deadline_after(slice_ns);
    pthread_mutex_lock(&self->mu);
    if (atomic_load(&self->unfinished) > 0) {
        pthread_cond_timedwait(&self->all_done, &self->mu, &deadline);
    }
    int done = atomic_load(&self->unfinished) <= 0;
    pthread_mutex_unlock(&self->mu);
    return done;
}

static PyObject *
queue_join(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    queue_object *self = (queue_object *)op;
    if (parpy_ring_check_owned(&self->ring, "this parpy.Queue") < 0) {
        return NULL;
    }
    if (parpy_wait_interruptibly(join_wait, self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- state ------------------------------------------------------------------ */

static PyObject *
queue_qsize(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(parpy_ring_size(&((queue_object *)op)->ring));
}

static PyObject *
queue_empty(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(parpy_ring_size(&((queue_object *)op)->ring) == 0);
}

static PyObject *
queue_full(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    queue_object *self = (queue_object *)op;
    Py_ssize_t max = self->maxsize;
    return PyBool_FromLong(max > 0 && parpy_ring_size(&self->ring) >= (size_t)max);
}

static void
drop_item(void *item, void *arg)
{
    Py_ssize_t *count = arg;
    Py_DECREF((PyObject *)item);
    ++*count;
}

PyDoc_STRVAR(shutdown_doc,
             "shutdown($self, immediate=False)\n--\n\n"
             "Shut the queue down: puts raise ShutDown, and gets once it is empty.\n"
             "\n"
             "Blocked callers wake.\n"
             "\n"
             "Parameters\n"
             "----------\n"
             "immediate : bool, default False\n"
             "    True: the items left are dropped and marked done, so gets raise\n"
             "    ShutDown at once and join returns.\n"
             "\n"
             "Raises\n"
             "------\n"
             "RuntimeError\n"
             "    In a child process, for a queue inherited across a fork.");

static PyObject *
queue_shutdown(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"immediate", NULL};
    queue_object *self = (queue_object *)op;
    int immediate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|p:shutdown", names, &immediate) ||
        parpy_ring_check_owned(&self->ring, "this parpy.Queue") < 0) {
        return NULL;
    }
    self->is_shutdown = 1;
    parpy_ring_close(&self->ring);
    if (immediate) {
        Py_ssize_t dropped = 0;
        parpy_ring_drain(&self->ring, drop_item, &dropped);
        long long n = atomic_load(&self->unfinished);
        while (
            !atomic_compare_exchange_weak(&self->unfinished, &n, n > dropped ? n - dropped : 0)) {
        }
        wake_joiners(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
queue_get_maxsize(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(((queue_object *)op)->maxsize);
}

static int
queue_set_maxsize(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    queue_object *self = (queue_object *)op;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete maxsize");
        return -1;
    }
    Py_ssize_t n = PyNumber_AsSsize_t(value, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    self->maxsize = n;
    parpy_ring_set_maxsize(&self->ring, n > 0 ? (size_t)n : 0); /* wakes blocked putters */
    return 0;
}

static PyObject *
queue_get_unfinished(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(atomic_load(&((queue_object *)op)->unfinished));
}

static PyObject *
queue_get_is_shutdown(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((queue_object *)op)->is_shutdown);
}

/* ---- type ------------------------------------------------------------------- */

static int
queue_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"maxsize", NULL};
    queue_object *self = (queue_object *)op;
    PyObject *maxsize = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Queue", names, &maxsize)) {
        return -1;
    }
    (void)self;
    return maxsize == NULL ? 0 : queue_set_maxsize(op, maxsize, NULL);
}

static PyObject *
queue_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    queue_object *self = (queue_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (parpy_ring_init(&self->ring, 0) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    atomic_init(&self->unfinished, 0);
    atomic_init(&self->blocked[0], 0);
    atomic_init(&self->blocked[1], 0);
    pthread_mutex_init(&self->mu, NULL);
    parpy_cond_init_monotonic(&self->all_done);
    return (PyObject *)self;
}

typedef struct {
    visitproc visit;
    void *arg;
} visitor;

static int
visit_item(void *item, void *arg)
{
    visitor *v = arg;
    return v->visit((PyObject *)item, v->arg);
}

/* No thread holds the ring's lock while it waits for the GIL. */
static int
queue_traverse(PyObject *op, visitproc visit, void *arg)
{
    queue_object *self = (queue_object *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->dict);
    if (self->ring.slots == NULL) {
        return 0;
    }
    visitor v = {visit, arg};
    return parpy_ring_foreach(&self->ring, visit_item, &v);
}

static int
queue_clear(PyObject *op)
{
    queue_object *self = (queue_object *)op;
    Py_CLEAR(self->dict);
    if (self->ring.slots != NULL) {
        Py_ssize_t dropped = 0;
        parpy_ring_drain(&self->ring, drop_item, &dropped);
    }
    return 0;
}

static void
queue_dealloc(PyObject *op)
{
    queue_object *self = (queue_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    queue_clear(op); /* no thread is blocked in it: it would hold a reference */
    if (self->ring.slots != NULL) {
        if (!parpy_ring_inherited(&self->ring)) { /* else the parent's threads' */
            pthread_cond_destroy(&self->all_done);
            pthread_mutex_destroy(&self->mu);
        }
        parpy_ring_destroy(&self->ring);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_FASTCALL | METH_KEYWORDS, put_doc},
    {"put_nowait", (PyCFunction)(void (*)(void))queue_put_nowait, METH_FASTCALL | METH_KEYWORDS,
     put_nowait_doc},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_FASTCALL | METH_KEYWORDS, get_doc},
    {"get_nowait", queue_get_nowait, METH_NOARGS, get_nowait_doc},
    {"task_done", queue_task_done, METH_NOARGS, task_done_doc},
    {"join", queue_join, METH_NOARGS, join_doc},
    {"qsize", queue_qsize, METH_NOARGS,
     "qsize($self, /)\n--\n\nReturn the number of items in the queue.\n\n"
     "Returns\n-------\nint\n    The items put and not yet gotten."},
    {"empty", queue_empty, METH_NOARGS,
     "empty($self, /)\n--\n\nReturn True if the queue is empty.\n\n"
     "Returns\n-------\nbool\n    Whether no item is in the queue."},
    {"full", queue_full, METH_NOARGS,
     "full($self, /)\n--\n\nReturn True if the queue is full.\n\n"
     "Returns\n-------\nbool\n    Whether the queue holds maxsize items (never, with no limit)."},
    {"shutdown", (PyCFunction)(void (*)(void))queue_shutdown, METH_VARARGS | METH_KEYWORDS,
     shutdown_doc},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"maxsize", queue_get_maxsize, queue_set_maxsize,
     "The most items the queue holds; <= 0: no limit. Assignable.", NULL},
    {"unfinished_tasks", queue_get_unfinished, NULL, "Items put and not yet marked done.", NULL},
    {"is_shutdown", queue_get_is_shutdown, NULL, "True once shutdown() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef queue_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(queue_object, weakrefs), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(queue_object, dict), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot queue_slots[] = {
    {Py_tp_new, queue_new},
    {Py_tp_init, queue_init},
    {Py_tp_dealloc, queue_dealloc},
    {Py_tp_traverse, queue_traverse},
    {Py_tp_clear, queue_clear},
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {Py_tp_members, queue_members},
    {Py_tp_doc,
     "Queue(maxsize=0)\n--\n\n"
     "queue.Queue on a native multi-producer multi-consumer queue.\n\n"
     "The same API; blocking waits release the GIL, and Ctrl-C interrupts them.\n\n"
     "Parameters\n"
     "----------\n"
     "maxsize : int, default 0\n"
     "    The most items the queue holds; 0 or less: no limit. Assignable later.\n\n"
     "Raises\n"
     "------\n"
     "TypeError\n"
     "    If maxsize is not an int.\n"
     "OverflowError\n"
     "    If maxsize does not fit in a C ssize_t."},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "parpy.Queue",
    .basicsize = sizeof(queue_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = queue_slots,
};

PyTypeObject *
parpy_queue_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
}

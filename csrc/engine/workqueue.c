/* parpy._core.WorkQueue: the work queue of parpy.Pool and
 * parpy.ThreadPoolExecutor, on a parpy_ring.
 *
 * A task is a Python call, fn(*args, **kwargs), or a share of a Batch (a
 * batch is queued with as many helpers as threads should compute it). Worker
 * threads (started by the Python layer) call run(), which waits for tasks
 * with the GIL released. Every task completes through one protocol, as in
 * multiprocessing.pool: target._set(index, (ok, value)); a call with no
 * target reports a failure as unraisable. A worker that takes a small batch
 * takes the small batches queued behind it too (up to a budget of estimated
 * work), computes them all without the GIL, then takes the GIL once to
 * complete them.
 *
 * Lifecycle policy (when to start workers, shutdown, broken pools) lives in
 * parpy/pool.py and parpy/executor.py; this file does the hot part only.
 */
#include "engine/workqueue.h"

#include "engine/batch.h"
#include "parpy_state.h"
#include "runtime/errors.h"
#include "runtime/ring.h"

#include <stdlib.h>

/* A worker computes at most this many small batches, and this much
   estimated work, before it takes the GIL to complete them. */
#define GATHER_MAX 64
#define GATHER_NS  5.0e4

typedef struct {
    PyObject *target;   /* strong reference, or NULL */
    PyObject *index;    /* strong reference */
    PyObject *fn;       /* strong reference; NULL for a batch's share */
    PyObject *args;     /* strong reference to a tuple */
    PyObject *kwargs;   /* strong reference to a dict, or NULL */
    parpy_batch *batch; /* strong reference, for a batch's share */
} task_t;

typedef struct {
    PyObject_HEAD
    parpy_ring ring;
    atomic_int stop; /* set by stop(): kernel computations in progress are cancelled */
} queue_object;

static parpy_state *
queue_state(queue_object *self)
{
    return parpy_state_of(Py_TYPE(self));
}

/* Releases what the task holds and frees it. GIL held. */
static void
task_free(task_t *t)
{
    Py_XDECREF(t->target);
    Py_XDECREF(t->index);
    Py_XDECREF(t->fn);
    Py_XDECREF(t->args);
    Py_XDECREF(t->kwargs);
    Py_XDECREF(t->batch);
    free(t);
}

/* ---- completion (GIL held) ---------------------------------------------- */

/* target._set(index, outcome), outcome stolen. A failure of _set, or an
   outcome nobody receives that failed, is reported as unraisable. */
static void
deliver(parpy_state *st, PyObject *target, PyObject *index, PyObject *outcome, PyObject *where)
{
    if (outcome == NULL) {
        PyErr_WriteUnraisable(where);
        return;
    }
    if (target != NULL && target != Py_None) {
        PyObject *args[3] = {target, index, outcome};
        PyObject *r =
            PyObject_VectorcallMethod(st->str_set, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL) {
            PyErr_WriteUnraisable(target);
        }
        Py_XDECREF(r);
    }
    else if (PyTuple_GET_ITEM(outcome, 0) != Py_True) {
        parpy_restore_exception(Py_NewRef(PyTuple_GET_ITEM(outcome, 1)));
        PyErr_WriteUnraisable(where);
    }
    Py_DECREF(outcome);
}

static void
run_call(parpy_state *st, task_t *t)
{
    PyObject *value = PyObject_Call(t->fn, t->args, t->kwargs);
    PyObject *outcome;
    if (value != NULL) {
        outcome = PyTuple_Pack(2, Py_True, value);
        Py_DECREF(value);
    }
    else {
        PyObject *exc = parpy_fetch_exception();
        outcome = PyTuple_Pack(2, Py_False, exc);
        Py_DECREF(exc);
    }
    deliver(st, t->target, t->index, outcome, t->fn);
}

static void
complete_batch(parpy_state *st, parpy_batch *b)
{
    deliver(st, parpy_batch_target(b), parpy_batch_index(b), parpy_batch_outcome(b), (PyObject *)b);
}

/* ---- the worker side ----------------------------------------------------- */

static int
is_small(task_t *t)
{
    return t->batch != NULL && !parpy_batch_deferred(t->batch) &&
           parpy_batch_cost(t->batch) < GATHER_NS && parpy_batch_helpers(t->batch) == 1;
}

/* After tasks[0], a small batch's share: pops the small batches queued
   behind it, up to limit tasks and GATHER_NS of work, without waiting.
   Another task popped on the way goes to *next. No Python API. Returns the
   count in tasks. */
static int
gather(queue_object *self, task_t **tasks, int limit, task_t **next)
{
    int n = 1;
    if (!is_small(tasks[0])) {
        return n;
    }
    double cost = parpy_batch_cost(tasks[0]->batch);
    while (n < limit && cost < GATHER_NS) {
        void *p;
        if (parpy_ring_pop(&self->ring, &p, 0) != PARPY_RING_OK) {
            break;
        }
        task_t *t = p;
        if (!is_small(t)) {
            *next = t;
            break;
        }
        tasks[n++] = t;
        cost += parpy_batch_cost(t->batch);
    }
    return n;
}

/* No Python API: computes the batches' shares; last[i] is set for the
   shares that finished their batch. */
static void
help_all(queue_object *self, task_t **tasks, int n, int *last)
{
    for (int i = 0; i < n; i++) {
        last[i] = parpy_batch_help(tasks[i]->batch, &self->stop);
    }
}

PyDoc_STRVAR(queue_run_doc,
             "run($self, max_tasks, /)\n--\n\n"
             "Run tasks on the calling thread until the queue is closed and empty, or\n"
             "stopped (returns False), or max_tasks tasks have run (returns True; 0 means\n"
             "no limit). Waits with the GIL released.");

static PyObject *
queue_run(PyObject *op, PyObject *arg)
{
    queue_object *self = (queue_object *)op;
    parpy_state *st = queue_state(self);
    Py_ssize_t max_tasks = PyLong_AsSsize_t(arg);
    if (max_tasks == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t ran = 0;
    task_t *tasks[GATHER_MAX];
    int last[GATHER_MAX];
    task_t *next = NULL; /* popped while gathering, runs next */
    for (;;) {
        int limit = GATHER_MAX;
        if (max_tasks > 0 && max_tasks - ran < limit) {
            limit = (int)(max_tasks - ran);
        }
        int n = 0, computed = 0;
        void *p = next;
        next = NULL;
        /* A pending task is taken without giving up the GIL (as a worker of
           queue.SimpleQueue does): handing the GIL back and forth per task
           costs more than the task. Nobody holds the ring's lock while
           waiting for the GIL, so taking it here cannot deadlock. */
        int rc = p != NULL ? PARPY_RING_OK : parpy_ring_pop(&self->ring, &p, 0);
        if (rc == PARPY_RING_TIMEOUT) {
            Py_BEGIN_ALLOW_THREADS
                rc = parpy_ring_pop(&self->ring, &p, -1);
                if (rc == PARPY_RING_OK && ((task_t *)p)->batch != NULL &&
                    !parpy_batch_deferred(((task_t *)p)->batch)) {
                    tasks[0] = p;
                    n = gather(self, tasks, limit, &next);
                    help_all(self, tasks, n, last);
                    computed = 1;
                }
            Py_END_ALLOW_THREADS
        }
        if (rc != PARPY_RING_OK) {
            Py_RETURN_FALSE;
        }
        if (!computed) {
            task_t *t = p;
            if (t->batch == NULL) {
                run_call(st, t);
                task_free(t);
                if (max_tasks > 0 && ++ran >= max_tasks) {
                    Py_RETURN_TRUE;
                }
                continue;
            }
            tasks[0] = t;
            if (parpy_batch_deferred(t->batch)) {
                n = 1;
                parpy_batch_prepare(t->batch); /* a failure is the batch's outcome */
            }
            else {
                n = gather(self, tasks, limit, &next);
            }
            Py_BEGIN_ALLOW_THREADS
                help_all(self, tasks, n, last);
            Py_END_ALLOW_THREADS
        }
        for (int i = 0; i < n; i++) {
            if (last[i]) {
                complete_batch(st, tasks[i]->batch);
            }
            task_free(tasks[i]);
        }
        ran += n;
        /* (gather stops at the limit, so a task popped on the way is never
           left over when the limit is reached) */
        if (max_tasks > 0 && ran >= max_tasks && next == NULL) {
            Py_RETURN_TRUE;
        }
    }
}

PyDoc_STRVAR(queue_submit_doc,
             "submit($self, target, index, fn, args=(), kwargs=None, /)\n--\n\n"
             "Queue fn(*args, **kwargs), or fn itself when it is a Batch; its outcome goes\n"
             "to target._set(index, (ok, value)) (target None: dropped, failures reported\n"
             "as unraisable). Returns True if no worker is idle to take it. RuntimeError\n"
             "once closed.");

static int
push_task(queue_object *self, task_t *t)
{
    int rc = parpy_ring_push(&self->ring, t, -1); /* unbounded: never waits */
    if (rc == PARPY_RING_OK) {
        return 0;
    }
    task_free(t);
    if (rc == PARPY_RING_NOMEM) {
        PyErr_NoMemory();
    }
    else {
        PyErr_SetString(PyExc_RuntimeError, "cannot schedule new tasks: the queue is closed");
    }
    return -1;
}

static PyObject *
queue_submit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    queue_object *self = (queue_object *)op;
    parpy_state *st = queue_state(self);
    if (nargs < 3 || nargs > 5) {
        PyErr_Format(PyExc_TypeError, "submit() takes 3 to 5 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *target = args[0], *index = args[1], *fn = args[2];
    PyObject *fargs = nargs > 3 ? args[3] : NULL;
    PyObject *kwargs = nargs > 4 && args[4] != Py_None ? args[4] : NULL;
    if ((fargs != NULL && !PyTuple_Check(fargs)) || (kwargs != NULL && !PyDict_Check(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "submit: args must be a tuple and kwargs a dict or None");
        return NULL;
    }
    if (parpy_ring_check_owned(&self->ring, "this parpy work queue") < 0) {
        return NULL;
    }
    if (parpy_ring_closed(&self->ring)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot schedule new tasks: the queue is closed");
        return NULL;
    }
    if (Py_IS_TYPE(fn, st->batch_type)) {
        parpy_batch *b = (parpy_batch *)fn;
        if (parpy_batch_target(b) != NULL) {
            PyErr_SetString(PyExc_RuntimeError, "a batch is submitted once");
            return NULL;
        }
        parpy_batch_set_target(b, target, index);
        int helpers = parpy_batch_helpers(b);
        for (int h = 0; h < helpers; h++) {
            task_t *t = calloc(1, sizeof(task_t));
            if (t == NULL) {
                /* The shares not queued will not run; those queued finish it. */
                for (int rest = h; rest < helpers; rest++) {
                    parpy_batch_abandon(b);
                }
                return PyErr_NoMemory();
            }
            t->batch = (parpy_batch *)Py_NewRef(fn);
            if (push_task(self, t) < 0) {
                for (int rest = h + 1; rest < helpers; rest++) {
                    parpy_batch_abandon(b);
                }
                parpy_batch_abandon(b);
                return NULL;
            }
        }
    }
    else {
        task_t *t = calloc(1, sizeof(task_t));
        if (t == NULL) {
            return PyErr_NoMemory();
        }
        t->target = target == Py_None ? NULL : Py_NewRef(target);
        t->index = Py_NewRef(index);
        t->fn = Py_NewRef(fn);
        t->args = fargs != NULL ? Py_NewRef(fargs) : PyTuple_New(0);
        t->kwargs = Py_XNewRef(kwargs);
        if (t->args == NULL || push_task(self, t) < 0) {
            return NULL;
        }
    }
    size_t pending = parpy_ring_size(&self->ring);
    return PyBool_FromLong(pending > (size_t)parpy_ring_waiting(&self->ring));
}

/* ---- removing tasks ----------------------------------------------------- */

typedef struct {
    PyObject *targets; /* a list, or NULL once out of memory */
} drained;

/* Collects the target of a task that will now never complete, and frees the
   task. GIL held. */
static void
drop_task(void *p, void *arg)
{
    task_t *t = p;
    drained *d = arg;
    PyObject *target = t->target;
    if (t->batch != NULL) {
        target = parpy_batch_abandon(t->batch) ? parpy_batch_target(t->batch) : NULL;
    }
    if (d->targets != NULL && target != NULL && target != Py_None &&
        PyList_Append(d->targets, target) < 0) {
        PyErr_Clear();
        Py_CLEAR(d->targets);
    }
    task_free(t);
}

static PyObject *
drain(queue_object *self)
{
    drained d = {PyList_New(0)};
    if (d.targets == NULL) {
        return NULL;
    }
    parpy_ring_drain(&self->ring, drop_task, &d);
    return d.targets != NULL ? d.targets : PyErr_NoMemory();
}

PyDoc_STRVAR(queue_drain_doc,
             "drain($self, /)\n--\n\n"
             "Remove every pending task; return the targets that will now never receive\n"
             "their outcome.");

static PyObject *
queue_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return drain((queue_object *)op);
}

PyDoc_STRVAR(queue_close_doc,
             "close($self, /)\n--\n\n"
             "Accept no more tasks; workers leave once the pending ones ran.");

static PyObject *
queue_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    parpy_ring_close(&((queue_object *)op)->ring);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(queue_stop_doc,
             "stop($self, /)\n--\n\n"
             "Close the queue, cancel the kernel computations in progress and make every\n"
             "worker leave after its current task; remove the pending tasks and return the\n"
             "targets that will now never receive their outcome.");

static PyObject *
queue_stop(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    queue_object *self = (queue_object *)op;
    atomic_store(&self->stop, 1);
    parpy_ring_stop(&self->ring);
    return drain(self);
}

static PyObject *
queue_get_idle(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(parpy_ring_waiting(&((queue_object *)op)->ring));
}

static PyObject *
queue_get_pending(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(parpy_ring_size(&((queue_object *)op)->ring));
}

static PyObject *
queue_get_closed(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(parpy_ring_closed(&((queue_object *)op)->ring));
}

/* ---- type --------------------------------------------------------------- */

static PyObject *
queue_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "WorkQueue() takes no arguments");
        return NULL;
    }
    queue_object *self = (queue_object *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (parpy_ring_init(&self->ring, 0) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    atomic_init(&self->stop, 0);
    return (PyObject *)self;
}

typedef struct {
    visitproc visit;
    void *arg;
} visitor;

static int
visit_task(void *p, void *arg)
{
    task_t *t = p;
    visitor *v = arg;
    int rc = 0;
    /* A batch's share refers to the batch only, which is not tracked: its
       items refer to leaf objects (ints, bytes, str), its target to results
       that do not refer back to the queue. */
    if ((t->target && (rc = v->visit(t->target, v->arg))) ||
        (t->fn && (rc = v->visit(t->fn, v->arg))) ||
        (t->args && (rc = v->visit(t->args, v->arg))) ||
        (t->kwargs && (rc = v->visit(t->kwargs, v->arg)))) {
        return rc;
    }
    return 0;
}

/* Pending tasks hold references (a pool's calls refer back to the pool):
   the collector sees them. No worker runs while the GIL is held here, and
   none holds the ring's lock while it waits for the GIL. */
static int
queue_traverse(PyObject *op, visitproc visit, void *arg)
{
    queue_object *self = (queue_object *)op;
    Py_VISIT(Py_TYPE(op));
    if (self->ring.slots == NULL) {
        return 0;
    }
    visitor v = {visit, arg};
    return parpy_ring_foreach(&self->ring, visit_task, &v);
}

static void
free_task(void *p, void *Py_UNUSED(arg))
{
    task_t *t = p;
    if (t->batch != NULL) {
        parpy_batch_abandon(t->batch);
    }
    task_free(t);
}

static int
queue_clear(PyObject *op)
{
    queue_object *self = (queue_object *)op;
    if (self->ring.slots != NULL) {
        parpy_ring_drain(&self->ring, free_task, NULL);
    }
    return 0;
}

static void
queue_dealloc(PyObject *op)
{
    queue_object *self = (queue_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    queue_clear(op); /* no worker is in run(): it would hold a reference */
    if (self->ring.slots != NULL) {
        parpy_ring_destroy(&self->ring);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef queue_methods[] = {
    {"run", queue_run, METH_O, queue_run_doc},
    {"submit", (PyCFunction)(void (*)(void))queue_submit, METH_FASTCALL, queue_submit_doc},
    {"drain", queue_drain, METH_NOARGS, queue_drain_doc},
    {"close", queue_close, METH_NOARGS, queue_close_doc},
    {"stop", queue_stop, METH_NOARGS, queue_stop_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"idle", queue_get_idle, NULL, "Workers waiting for a task.", NULL},
    {"pending", queue_get_pending, NULL, "Tasks not yet taken by a worker.", NULL},
    {"closed", queue_get_closed, NULL, "True once close() or stop() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot queue_slots[] = {
    {Py_tp_new, queue_new},
    {Py_tp_dealloc, queue_dealloc},
    {Py_tp_traverse, queue_traverse},
    {Py_tp_clear, queue_clear},
    {Py_tp_methods, queue_methods},
    {Py_tp_getset, queue_getset},
    {Py_tp_doc, "WorkQueue()\n--\n\nThe work queue of parpy.Pool and parpy.ThreadPoolExecutor."},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "parpy._core.WorkQueue",
    .basicsize = sizeof(queue_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = queue_slots,
};

PyTypeObject *
parpy_workqueue_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
}

/* parpy._core.WorkQueue: the task queue under parpy.Pool and
 * parpy.ThreadPoolExecutor.
 *
 * Worker threads (started by the Python layer) call run(), which waits for
 * tasks with the GIL released. A task is either
 *   - a call, fn(*args, **kwargs), run with the GIL held; with a future, its
 *     outcome completes the future as concurrent.futures' workers do; or
 *   - a kernel item with a future: parsed and validated when submitted (bad
 *     input fails the future at once), computed without the GIL, and its
 *     future completed from C. A worker takes consecutive kernel tasks up to
 *     a small budget of estimated work, computes them all, then takes the
 *     GIL once to complete their futures.
 * Lifecycle policy (when to start workers, shutdown, broken pools) lives in
 * parpy/pool.py and parpy/executor.py; this file does the hot part only.
 */
#include "parpy.h"

#include <pthread.h>
#include <stdlib.h>

/* A worker computes at most this many kernel tasks, and this much estimated
   work, before it takes the GIL to complete their futures. */
#define BATCH_MAX 64
#define BATCH_NS  5.0e4
/* A kernel task whose result takes at least this much memory reserves it
   when a worker takes the task, not when it is submitted: a thousand
   pending fib(10**8) must not hold a thousand results' memory. */
#define DEFER_BYTES (UINT64_C(64) << 10)

typedef struct task {
    struct task *next;
    PyObject *future; /* strong reference, or NULL */
    PyObject *fn;     /* strong reference; NULL for a kernel task */
    PyObject *args;   /* strong reference to a tuple; NULL for a kernel task */
    PyObject *kwargs; /* strong reference to a dict, or NULL */
    const parpy_kernel *kernel;
    double cost;
    int status;
    int deferred; /* the kernel's prepare runs when a worker takes the task */
    union {
        char bytes[PARPY_ITEM_MAX];
        max_align_t align;
    } item;
} task_t;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    pthread_cond_t cv;
    task_t *head, *tail; /* pending tasks, guarded by mu */
    Py_ssize_t pending;  /* guarded by mu */
    int idle;            /* workers waiting for a task, guarded by mu */
    int closed;          /* no more tasks; workers leave when none is left */
    atomic_int stop;     /* workers leave now; kernel computations are cancelled */
} queue_object;

static parpy_state *
queue_state(queue_object *self)
{
    return (parpy_state *)PyType_GetModuleState(Py_TYPE(self));
}

/* Releases what the task holds and frees it. GIL held. */
static void
task_free(task_t *t)
{
    if (t->kernel != NULL && t->kernel->clear != NULL) {
        t->kernel->clear(&t->item);
    }
    Py_XDECREF(t->future);
    Py_XDECREF(t->fn);
    Py_XDECREF(t->args);
    Py_XDECREF(t->kwargs);
    free(t);
}

/* ---- completing tasks (GIL held) ---------------------------------------- */

/* Calls future.name(arg) (arg may be NULL); reports a failure as
   unraisable. Returns the result (a new reference), or NULL. */
static PyObject *
call_future(PyObject *future, PyObject *name, PyObject *arg)
{
    PyObject *r = arg != NULL ? PyObject_CallMethodOneArg(future, name, arg)
                              : PyObject_CallMethodNoArgs(future, name);
    if (r == NULL) {
        PyErr_WriteUnraisable(future);
    }
    return r;
}

/* Completes future with the raised exception, which is cleared. */
static void
fail_future(parpy_state *st, PyObject *future)
{
    PyObject *exc = parpy_fetch_exception();
    Py_XDECREF(call_future(future, st->str_set_exception, exc));
    Py_XDECREF(exc);
}

/* Marks future running, as a concurrent.futures worker does. Returns 1 if
   the task should run, 0 if the future was cancelled (or failed). */
static int
start_future(parpy_state *st, PyObject *future)
{
    PyObject *r = call_future(future, st->str_set_running, NULL);
    int run = r == Py_True;
    Py_XDECREF(r);
    return run;
}

/* Fails the future of a task that did not run with the raised exception
   (cleared), unless the future was cancelled. */
static void
reject(parpy_state *st, PyObject *future)
{
    PyObject *exc = parpy_fetch_exception(); /* first: the calls below need no error set */
    if (start_future(st, future)) {
        Py_XDECREF(call_future(future, st->str_set_exception, exc));
    }
    Py_DECREF(exc);
}

/* Builds a computed kernel task's result and completes its future. An item
   that is not built is left to task_free to clear. */
static void
complete_kernel(parpy_state *st, task_t *t)
{
    if (t->status == PARPY_ECANCELLED) { /* the queue was stopped */
        Py_XDECREF(call_future(t->future, st->str_cancel, NULL));
        return;
    }
    if (t->status != PARPY_OK) {
        PyErr_Format(PyExc_MemoryError, "%s: out of memory (GMP allocation failed)",
                     t->kernel->name);
        reject(st, t->future);
        return;
    }
    if (!start_future(st, t->future)) {
        return;
    }
    const parpy_kernel *k = t->kernel;
    t->kernel = NULL; /* build consumes the item */
    PyObject *value = k->build(&t->item);
    if (value == NULL) {
        fail_future(st, t->future);
        return;
    }
    Py_XDECREF(call_future(t->future, st->str_set_result, value));
    Py_DECREF(value);
}

/* Runs a call task. A failure of a call without a future is reported as
   unraisable (the Python layer's calls catch their own errors). */
static void
complete_call(parpy_state *st, task_t *t)
{
    if (t->future != NULL && !start_future(st, t->future)) {
        return;
    }
    PyObject *value = PyObject_Call(t->fn, t->args, t->kwargs);
    if (t->future == NULL) {
        if (value == NULL) {
            PyErr_WriteUnraisable(t->fn);
        }
        Py_XDECREF(value);
        return;
    }
    if (value == NULL) {
        fail_future(st, t->future);
        return;
    }
    Py_XDECREF(call_future(t->future, st->str_set_result, value));
    Py_DECREF(value);
}

/* ---- the worker side (no GIL) ------------------------------------------- */

static task_t *
pop_locked(queue_object *self)
{
    task_t *t = self->head;
    self->head = t->next;
    if (self->head == NULL) {
        self->tail = NULL;
    }
    self->pending--;
    t->next = NULL;
    return t;
}

/* Fills batch with one call task, or up to limit kernel tasks, waiting for
   work if wait is set. Returns how many: 0 when the worker should leave (or,
   without wait, when nothing is pending). */
static int
take(queue_object *self, task_t **batch, int limit, int wait)
{
    int n = 0;
    pthread_mutex_lock(&self->mu);
    while (wait && self->head == NULL && !self->closed && !atomic_load(&self->stop)) {
        self->idle++;
        pthread_cond_wait(&self->cv, &self->mu);
        self->idle--;
    }
    if (self->head != NULL && !atomic_load(&self->stop)) {
        batch[n++] = pop_locked(self);
        if (batch[0]->kernel != NULL && !batch[0]->deferred) {
            double cost = batch[0]->cost;
            while (n < limit && self->head != NULL && self->head->kernel != NULL &&
                   !self->head->deferred && cost < BATCH_NS) {
                cost += self->head->cost;
                batch[n++] = pop_locked(self);
            }
        }
    }
    pthread_mutex_unlock(&self->mu);
    return n;
}

static void
compute(queue_object *self, task_t **batch, int n)
{
    parpy_ctx ctx = {.cancel = &self->stop};
    for (int i = 0; i < n; i++) {
        task_t *t = batch[i];
        t->status = parpy_cancelled(&ctx) ? PARPY_ECANCELLED : t->kernel->compute(&t->item, &ctx);
    }
}

/* ---- methods ------------------------------------------------------------ */

PyDoc_STRVAR(queue_run_doc,
             "run(max_tasks, /)\n--\n\n"
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
    task_t *batch[BATCH_MAX];
    for (;;) {
        int limit = BATCH_MAX;
        if (max_tasks > 0 && max_tasks - ran < limit) {
            limit = (int)(max_tasks - ran);
        }
        /* A pending call runs without giving up the GIL (as a worker of
           queue.SimpleQueue does): handing the GIL back and forth per task
           costs more than the task. Nobody holds mu while waiting for the
           GIL, so taking it here cannot deadlock. */
        int n = take(self, batch, limit, 0);
        if (n == 0 || (batch[0]->kernel != NULL && !batch[0]->deferred)) {
            Py_BEGIN_ALLOW_THREADS
                if (n == 0) {
                    n = take(self, batch, limit, 1);
                }
                if (n > 0 && batch[0]->kernel != NULL && !batch[0]->deferred) {
                    compute(self, batch, n);
                }
            Py_END_ALLOW_THREADS
        }
        if (n == 0) {
            Py_RETURN_FALSE;
        }
        if (batch[0]->deferred) {
            /* One task with a large result (take() hands it out alone):
               reserve the result now, with the GIL, then compute. */
            task_t *t = batch[0];
            if (t->kernel->prepare != NULL && t->kernel->prepare(&t->item) < 0) {
                reject(st, t->future);
                t->kernel = NULL; /* nothing was reserved, nothing to run */
            }
            else {
                Py_BEGIN_ALLOW_THREADS
                    compute(self, batch, 1);
                Py_END_ALLOW_THREADS
            }
        }
        for (int i = 0; i < n; i++) {
            if (batch[i]->kernel != NULL) {
                complete_kernel(st, batch[i]);
            }
            else if (batch[i]->fn != NULL) { /* a rejected task has neither */
                complete_call(st, batch[i]);
            }
            task_free(batch[i]);
        }
        ran += n;
        if (max_tasks > 0 && ran >= max_tasks) {
            Py_RETURN_TRUE;
        }
    }
}

/* Appends t and wakes a worker. Returns 1 if no worker is idle to take it
   (another worker would help), 0 otherwise, -1 (t freed, exception set) if
   the queue is closed. */
static int
push(queue_object *self, task_t *t)
{
    pthread_mutex_lock(&self->mu);
    if (self->closed) {
        pthread_mutex_unlock(&self->mu);
        task_free(t);
        PyErr_SetString(PyExc_RuntimeError, "cannot schedule new tasks: the queue is closed");
        return -1;
    }
    if (self->tail != NULL) {
        self->tail->next = t;
    }
    else {
        self->head = t;
    }
    self->tail = t;
    self->pending++;
    int busy = self->pending > self->idle;
    if (self->idle > 0) {
        pthread_cond_signal(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
    return busy;
}

/* Parses (and validates) a kernel task's item, and reserves its result
   unless that is large. Returns 0, or -1 with an exception set and nothing
   reserved. */
static int
parse_kernel_task(task_t *t, PyObject *args)
{
    const parpy_kernel *k = t->kernel;
    if (k->parse(&PyTuple_GET_ITEM(args, 0), &t->item) < 0) {
        return -1;
    }
    t->deferred = k->result_bytes != NULL && k->result_bytes(&t->item) >= DEFER_BYTES;
    if (!t->deferred && k->prepare != NULL && k->prepare(&t->item) < 0) {
        return -1;
    }
    t->cost = k->cost(&t->item);
    return 0;
}

PyDoc_STRVAR(queue_submit_doc,
             "submit(future, fn, args, kwargs, /)\n--\n\n"
             "Queue fn(*args, **kwargs); future (a concurrent.futures.Future, or None)\n"
             "receives its outcome. A parpy kernel with a future is validated now (bad\n"
             "input fails the future at once) and computed without the GIL. Returns True\n"
             "if no worker is idle to take the task. RuntimeError once closed.");

static PyObject *
queue_submit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    queue_object *self = (queue_object *)op;
    parpy_state *st = queue_state(self);
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "submit() takes exactly 4 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *future = args[0] == Py_None ? NULL : args[0];
    PyObject *fn = args[1], *fargs = args[2], *kwargs = args[3] == Py_None ? NULL : args[3];
    if (!PyTuple_Check(fargs) || (kwargs != NULL && !PyDict_Check(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "submit: args must be a tuple and kwargs a dict or None");
        return NULL;
    }
    task_t *t = calloc(1, sizeof(task_t));
    if (t == NULL) {
        return PyErr_NoMemory();
    }
    t->future = Py_XNewRef(future);
    if (future != NULL && Py_IS_TYPE(fn, st->kernel_type) &&
        (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0) &&
        PyTuple_GET_SIZE(fargs) == ((parpy_KernelObject *)fn)->kernel->arity) {
        t->kernel = ((parpy_KernelObject *)fn)->kernel;
        if (parse_kernel_task(t, fargs) < 0) {
            reject(st, future); /* bad input fails this future, as the call itself would */
            t->kernel = NULL;   /* nothing was reserved */
            task_free(t);
            Py_RETURN_FALSE;
        }
    }
    else {
        t->fn = Py_NewRef(fn);
        t->args = Py_NewRef(fargs);
        t->kwargs = Py_XNewRef(kwargs);
    }
    int busy = push(self, t);
    if (busy < 0) {
        return NULL;
    }
    return PyBool_FromLong(busy);
}

/* Unlinks every pending task. Returns the list. */
static task_t *
unlink_all(queue_object *self)
{
    pthread_mutex_lock(&self->mu);
    task_t *t = self->head;
    self->head = self->tail = NULL;
    self->pending = 0;
    pthread_mutex_unlock(&self->mu);
    return t;
}

/* Frees tasks; returns a new list of their futures, or NULL with an
   exception set (the tasks are freed either way). */
static PyObject *
free_tasks(task_t *t)
{
    PyObject *futures = PyList_New(0);
    while (t != NULL) {
        task_t *next = t->next;
        if (futures != NULL && t->future != NULL && PyList_Append(futures, t->future) < 0) {
            Py_CLEAR(futures);
        }
        task_free(t);
        t = next;
    }
    return futures;
}

PyDoc_STRVAR(queue_drain_doc,
             "drain()\n--\n\n"
             "Remove every pending task; return the futures they had.");

static PyObject *
queue_drain(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return free_tasks(unlink_all((queue_object *)op));
}

PyDoc_STRVAR(queue_close_doc,
             "close()\n--\n\n"
             "Accept no more tasks; workers leave once the pending ones ran.");

static PyObject *
queue_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    queue_object *self = (queue_object *)op;
    pthread_mutex_lock(&self->mu);
    self->closed = 1;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(queue_stop_doc,
             "stop()\n--\n\n"
             "Close the queue, cancel the kernel computations in progress and make every\n"
             "worker leave after its current task; remove the pending tasks and return the\n"
             "futures they had.");

static PyObject *
queue_stop(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    queue_object *self = (queue_object *)op;
    pthread_mutex_lock(&self->mu);
    self->closed = 1;
    atomic_store(&self->stop, 1);
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    return free_tasks(unlink_all(self));
}

static PyObject *
queue_get_idle(PyObject *op, void *Py_UNUSED(closure))
{
    queue_object *self = (queue_object *)op;
    pthread_mutex_lock(&self->mu);
    int idle = self->idle;
    pthread_mutex_unlock(&self->mu);
    return PyLong_FromLong(idle);
}

static PyObject *
queue_get_pending(PyObject *op, void *Py_UNUSED(closure))
{
    queue_object *self = (queue_object *)op;
    pthread_mutex_lock(&self->mu);
    Py_ssize_t pending = self->pending;
    pthread_mutex_unlock(&self->mu);
    return PyLong_FromSsize_t(pending);
}

static PyObject *
queue_get_closed(PyObject *op, void *Py_UNUSED(closure))
{
    queue_object *self = (queue_object *)op;
    pthread_mutex_lock(&self->mu);
    int closed = self->closed;
    pthread_mutex_unlock(&self->mu);
    return PyBool_FromLong(closed);
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
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    atomic_init(&self->stop, 0);
    return (PyObject *)self;
}

/* Pending tasks hold references (a pool's calls refer back to the pool):
   the collector sees them. No worker runs while the GIL is held here, and
   none holds mu while it waits for the GIL. */
static int
queue_traverse(PyObject *op, visitproc visit, void *arg)
{
    queue_object *self = (queue_object *)op;
    Py_VISIT(Py_TYPE(op));
    int rc = 0;
    pthread_mutex_lock(&self->mu);
    for (task_t *t = self->head; t != NULL && rc == 0; t = t->next) {
        if ((t->future && (rc = visit(t->future, arg))) || (t->fn && (rc = visit(t->fn, arg))) ||
            (t->args && (rc = visit(t->args, arg))) ||
            (t->kwargs && (rc = visit(t->kwargs, arg)))) {
            break;
        }
    }
    pthread_mutex_unlock(&self->mu);
    return rc;
}

static int
queue_clear(PyObject *op)
{
    task_t *t = unlink_all((queue_object *)op);
    while (t != NULL) {
        task_t *next = t->next;
        task_free(t);
        t = next;
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
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
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
    {Py_tp_doc, "WorkQueue()\n--\n\nThe task queue of parpy.Pool and parpy.ThreadPoolExecutor."},
    {0, NULL},
};

static PyType_Spec queue_spec = {
    .name = "parpy._core.WorkQueue",
    .basicsize = sizeof(queue_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = queue_slots,
};

PyTypeObject *
parpy_queue_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &queue_spec, NULL);
}

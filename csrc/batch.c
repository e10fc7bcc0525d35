/* The batch driver: runs a kernel's compute over many items on native
 * threads, with the GIL released once.
 *
 * A call parses every item with the GIL held (so bad input fails before any
 * work), then picks where to run from the items' estimated cost:
 *   - tiny work runs on the calling thread with the GIL held;
 *   - short serial work runs on the calling thread with the GIL released;
 *   - anything else is handed to a driver thread, and the calling thread
 *     waits in short slices, re-taking the GIL to run signal handlers. On an
 *     exception (KeyboardInterrupt) it sets the job's cancel flag, which
 *     workers poll between items and inside long items, and waits for every
 *     worker to come to rest before it returns.
 * A driver is a long-lived pthread that is the OpenMP master of its own
 * team. Python threads never enter an OpenMP region themselves, so a child
 * forked after parpy ran (GNU OpenMP's pool does not survive fork) simply
 * starts fresh drivers with fresh teams.
 */
#include "parpy.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- tuning ------------------------------------------------------------- */

#define SINGLE_RELEASE_NS 2.0e3     /* one item: release the GIL above this */
#define INLINE_GIL_NS     2.0e4     /* batch: keep the GIL below this */
#define DISPATCH_NS       5.0e6     /* serial work above this is made interruptible */
#define THREAD_MIN_NS     5.0e4     /* a thread is worth starting for this much work */
#define GRAIN_MIN_NS      2.0e4     /* smallest chunk of the default schedule */
#define WAIT_SLICE_NS     20000000L /* the calling thread checks signals this often */

/* ---- jobs --------------------------------------------------------------- */

typedef struct {
    double cost;
    Py_ssize_t index;
} cost_entry;

typedef struct {
    const parpy_kernel *kernel;
    char *items; /* n items of kernel->item_size bytes */
    Py_ssize_t n;
    unsigned char *status; /* per item: PARPY_OK or the error code */
    double *costs;         /* per item, for the default schedule */
    double total_cost;
    int nthreads;
    int schedule;
    Py_ssize_t chunksize;
    atomic_int cancel;
    const atomic_int *stop;  /* the caller's parpy_control: cancelled from outside, or NULL */
    atomic_size_t *progress; /* the caller's parpy_control: items finished, or NULL */
    /* default schedule: chunk c covers order[bounds[c] .. bounds[c + 1]) */
    Py_ssize_t *order; /* NULL means input order */
    Py_ssize_t *bounds;
    Py_ssize_t nchunks;
    atomic_size_t next_chunk;
    /* completion, signalled by the driver */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} job_t;

#define ITEM(job, i) ((void *)((job)->items + (size_t)(i) * (job)->kernel->item_size))

static void
run_item(job_t *job, Py_ssize_t i, const parpy_ctx *ctx)
{
    if (atomic_load_explicit(&job->cancel, memory_order_relaxed) ||
        (job->stop != NULL && atomic_load_explicit(job->stop, memory_order_relaxed))) {
        job->status[i] = PARPY_ECANCELLED;
        return;
    }
    int rc = job->kernel->compute(ITEM(job, i), ctx);
    job->status[i] = (unsigned char)rc;
    if (rc != PARPY_OK) {
        atomic_store(&job->cancel, 1); /* the call fails: stop the others */
    }
}

/* Counts n finished items for a progress display. */
static inline void
job_progress(job_t *job, size_t n)
{
    if (job->progress != NULL && n > 0) {
        atomic_fetch_add_explicit(job->progress, n, memory_order_relaxed);
    }
}

/* Runs items [0, n) in order on the current thread. */
static void
run_serial(job_t *job, const parpy_ctx *ctx)
{
    for (Py_ssize_t i = 0; i < job->n; i++) {
        run_item(job, i, ctx);
        if ((i & 63) == 63) {
            job_progress(job, 64);
        }
    }
    job_progress(job, (size_t)(job->n & 63));
}

static int
compare_cost_desc(const void *a, const void *b)
{
    double x = ((const cost_entry *)a)->cost, y = ((const cost_entry *)b)->cost;
    return (x < y) - (x > y);
}

/* The default schedule: items in decreasing cost (longest first), cut into
   chunks whose cost shrinks with the work left (guided, by cost rather than
   by count), handed out dynamically. Returns 0, or -1 if out of memory (the
   caller then falls back to OpenMP's dynamic schedule). */
static int
plan_default(job_t *job)
{
    Py_ssize_t n = job->n;
    double lo = INFINITY, hi = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        lo = fmin(lo, job->costs[i]);
        hi = fmax(hi, job->costs[i]);
    }
    job->bounds = malloc(((size_t)n + 1) * sizeof(Py_ssize_t));
    if (job->bounds == NULL) {
        return -1;
    }
    if (hi > 2.0 * lo) {
        cost_entry *entries = malloc((size_t)n * sizeof(cost_entry));
        job->order = malloc((size_t)n * sizeof(Py_ssize_t));
        if (entries == NULL || job->order == NULL) {
            free(entries);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            entries[i].cost = job->costs[i];
            entries[i].index = i;
        }
        qsort(entries, (size_t)n, sizeof(cost_entry), compare_cost_desc);
        for (Py_ssize_t i = 0; i < n; i++) {
            job->order[i] = entries[i].index;
        }
        free(entries);
    }
    double remaining = job->total_cost;
    Py_ssize_t c = 0, k = 0;
    job->bounds[0] = 0;
    while (k < n) {
        double target = fmax(remaining / (2.0 * job->nthreads), GRAIN_MIN_NS);
        double chunk = 0.0;
        do {
            chunk += job->costs[job->order ? job->order[k] : k];
            k++;
        } while (k < n && chunk < target);
        remaining -= chunk;
        job->bounds[++c] = k;
    }
    job->nchunks = c;
    atomic_init(&job->next_chunk, 0);
    return 0;
}

static omp_sched_t
omp_kind(int schedule)
{
    switch (schedule) {
    case PARPY_SCHED_STATIC:
        return omp_sched_static;
    case PARPY_SCHED_GUIDED:
        return omp_sched_guided;
    default:
        return omp_sched_dynamic;
    }
}

/* One team thread's part of the job: chunks of the default plan handed out
   dynamically, or the items under OpenMP's runtime schedule. */
static void
team_main(job_t *job, int planned)
{
    parpy_ctx ctx = {.cancel = &job->cancel};
    PARPY_HAPPENS_AFTER(job);
    if (planned) {
        for (;;) {
            size_t c = atomic_fetch_add_explicit(&job->next_chunk, 1, memory_order_relaxed);
            if (c >= (size_t)job->nchunks) {
                break;
            }
            for (Py_ssize_t k = job->bounds[c]; k < job->bounds[c + 1]; k++) {
                run_item(job, job->order ? job->order[k] : k, &ctx);
            }
            job_progress(job, (size_t)(job->bounds[c + 1] - job->bounds[c]));
        }
    }
    else {
#pragma omp for schedule(runtime) nowait
        for (Py_ssize_t i = 0; i < job->n; i++) {
            run_item(job, i, &ctx);
            job_progress(job, 1);
        }
    }
    PARPY_HAPPENS_BEFORE(job);
}

/* Runs team_main on the current thread and its team. GCC hands job and
   planned to the team through a block on this stack, written here and read
   by each team thread with no edge TSan can see; so this function and its
   outlined region are left uninstrumented, and team_main's annotations
   order everything else. */
PARPY_NO_TSAN static void
team_run(job_t *job, int planned)
{
#pragma omp parallel num_threads(job->nthreads)
    team_main(job, planned);
}

/* Runs every item of the job on the current thread and, when nthreads > 1,
   its OpenMP team. Pure C: no Python API. */
static void
job_execute(job_t *job)
{
    parpy_ctx ctx = {.cancel = &job->cancel};
    if (job->nthreads <= 1) {
        run_serial(job, &ctx);
        return;
    }
    int planned = job->schedule == PARPY_SCHED_AUTO && plan_default(job) == 0;
    if (!planned) {
        omp_set_schedule(omp_kind(job->schedule), (int)job->chunksize);
    }
    /* Region entry and exit, made visible to TSan: what the master did
       happens before the team's work, the team's work before the master
       goes on (the barriers are there, in libgomp, where TSan cannot see). */
    PARPY_HAPPENS_BEFORE(job);
    team_run(job, planned);
    PARPY_HAPPENS_AFTER(job);
}

/* ---- driver threads ----------------------------------------------------- */

typedef struct driver {
    pthread_cond_t cv;
    job_t *job; /* guarded by pool_mu */
    struct driver *next_idle;
} driver_t;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static driver_t *idle_drivers = NULL; /* guarded by pool_mu */

static void
job_finish(job_t *job)
{
    pthread_mutex_lock(&job->mu);
    job->done = 1;
    pthread_cond_signal(&job->cv);
    pthread_mutex_unlock(&job->mu);
    /* The waiter may free the job from here on. */
}

static void *
driver_main(void *arg)
{
    driver_t *d = arg;
    pthread_mutex_lock(&pool_mu);
    for (;;) {
        while (d->job == NULL) {
            pthread_cond_wait(&d->cv, &pool_mu);
        }
        job_t *job = d->job;
        pthread_mutex_unlock(&pool_mu);

        job_execute(job);

        /* Back on the idle list before the waiter wakes, so that the next
           call reuses this driver and its warm OpenMP team. */
        pthread_mutex_lock(&pool_mu);
        d->job = NULL;
        d->next_idle = idle_drivers;
        idle_drivers = d;
        pthread_mutex_unlock(&pool_mu);
        job_finish(job);
        pthread_mutex_lock(&pool_mu);
    }
    return NULL;
}

/* Hands job to an idle driver, starting one if none is idle. Returns 0, or
   -1 if no thread could be started. */
static int
job_dispatch(job_t *job)
{
    pthread_mutex_lock(&pool_mu);
    driver_t *d = idle_drivers;
    if (d != NULL) {
        idle_drivers = d->next_idle;
        d->job = job;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&pool_mu);
        return 0;
    }
    pthread_mutex_unlock(&pool_mu);

    d = calloc(1, sizeof(driver_t));
    if (d == NULL) {
        return -1;
    }
    pthread_cond_init(&d->cv, NULL);
    d->job = job;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, driver_main, d);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_cond_destroy(&d->cv);
        free(d);
        return -1;
    }
    return 0;
}

/* In a forked child the drivers do not exist: forget them. Their memory
   (a few bytes each) is left as it is. */
static void
after_fork_child(void)
{
    pthread_mutex_init(&pool_mu, NULL);
    idle_drivers = NULL;
}

/* ---- running a job ------------------------------------------------------ */

static void
add_ns(struct timespec *t, long ns)
{
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

/* Runs the job on a driver; the calling thread (GIL released, state *ts)
   waits in slices and runs signal handlers between them. Returns 0, or -1
   with the handlers' exception set, once every worker is at rest. */
static int
job_run_interruptibly(job_t *job, PyThreadState **ts)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&job->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&job->mu, NULL);
    job->done = 0;

    int interrupted = 0;
    if (job_dispatch(job) < 0) {
        job_execute(job); /* no thread to be had: run here, uninterruptibly */
        job->done = 1;
    }
    pthread_mutex_lock(&job->mu);
    while (!job->done) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        add_ns(&deadline, WAIT_SLICE_NS);
        int rc = pthread_cond_timedwait(&job->cv, &job->mu, &deadline);
        if (rc == ETIMEDOUT && job->stop != NULL && atomic_load(job->stop)) {
            atomic_store(&job->cancel, 1); /* cancelled from another thread */
        }
        if (rc == ETIMEDOUT && !job->done && !interrupted) {
            pthread_mutex_unlock(&job->mu);
            PyEval_RestoreThread(*ts);
            if (PyErr_CheckSignals() < 0) {
                interrupted = 1;
                atomic_store(&job->cancel, 1);
            }
            *ts = PyEval_SaveThread();
            pthread_mutex_lock(&job->mu);
        }
    }
    pthread_mutex_unlock(&job->mu);
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->cv);
    return interrupted ? -1 : 0;
}

/* Runs compute over the job's items where their cost says it should run.
   Called and returns with the GIL held. Returns 0, or -1 with an exception
   set (from a signal handler). */
static int
job_run(job_t *job, double release_ns)
{
    parpy_ctx ctx = {.cancel = &job->cancel};
    if (job->nthreads <= 1 && job->total_cost < release_ns) {
        run_serial(job, &ctx);
        return 0;
    }
    if (job->nthreads <= 1 && job->total_cost < DISPATCH_NS) {
        Py_BEGIN_ALLOW_THREADS
            run_serial(job, &ctx);
        Py_END_ALLOW_THREADS
        return 0;
    }
    PyThreadState *ts = PyEval_SaveThread();
    int rc = job_run_interruptibly(job, &ts);
    PyEval_RestoreThread(ts);
    return rc;
}

/* Turns the items' status into an exception after the GIL is retaken.
   Returns 0 if every item succeeded, else -1 with an exception set. */
static int
job_check(job_t *job, int interrupted, int single)
{
    Py_ssize_t cancelled = -1;
    for (Py_ssize_t i = 0; i < job->n; i++) {
        switch (job->status[i]) {
        case PARPY_OK:
            break;
        case PARPY_ENOMEM:
            if (interrupted) {
                PyErr_Clear();
            }
            if (single) {
                PyErr_Format(PyExc_MemoryError, "%s: out of memory (GMP allocation failed)",
                             job->kernel->name);
            }
            else {
                PyErr_Format(PyExc_MemoryError,
                             "%s: out of memory computing items[%zd] (GMP allocation failed)",
                             job->kernel->name, i);
            }
            return -1;
        default:
            if (cancelled < 0) {
                cancelled = i;
            }
        }
    }
    if (interrupted) {
        return -1;
    }
    if (cancelled >= 0) {
        PyErr_Format(PyExc_RuntimeError, "%s: items[%zd] was cancelled", job->kernel->name,
                     cancelled);
        return -1;
    }
    return 0;
}

static void
job_free(job_t *job)
{
    free(job->order);
    free(job->bounds);
    free(job->costs);
    free(job->status);
}

/* ---- one item ----------------------------------------------------------- */

PyObject *
parpy_run_one(const parpy_kernel *kernel, void *item, parpy_control *control)
{
    unsigned char status = PARPY_OK;
    job_t job = {
        .kernel = kernel,
        .items = item,
        .n = 1,
        .status = &status,
        .total_cost = kernel->cost(item),
        .nthreads = 1,
        .stop = control != NULL ? &control->cancel : NULL,
    };
    atomic_init(&job.cancel, 0);
    int interrupted = job_run(&job, SINGLE_RELEASE_NS) < 0;
    if (job_check(&job, interrupted, 1) < 0) {
        if (kernel->clear != NULL) {
            kernel->clear(item);
        }
        return NULL;
    }
    return kernel->build(item);
}

/* ---- batches ------------------------------------------------------------ */

/* Re-raises the pending exception with "items[i]: " before its message when
   it is one of the validation errors; other exceptions pass unchanged. */
PyObject *
parpy_fetch_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void
prefix_item_error(Py_ssize_t i)
{
    PyObject *exc = parpy_fetch_exception();
    PyObject *cls = (PyObject *)Py_TYPE(exc);
    if (cls == PyExc_TypeError || cls == PyExc_ValueError || cls == PyExc_OverflowError ||
        cls == PyExc_MemoryError) {
        PyObject *msg = PyObject_Str(exc);
        if (msg != NULL) {
            PyErr_Format(cls, "items[%zd]: %U", i, msg);
            Py_DECREF(msg);
            Py_DECREF(exc);
            return;
        }
        PyErr_Clear();
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef(cls), exc, PyException_GetTraceback(exc));
#endif
}

/* Parses one batch element into item. Kernels of arity > 1 take a tuple or
   list of that many arguments. Returns 0 or -1 with an exception set. */
static int
parse_element(const parpy_kernel *kernel, PyObject *obj, void *item)
{
    if (kernel->arity == 1) {
        return kernel->parse(&obj, item);
    }
    if (!(PyTuple_Check(obj) || PyList_Check(obj)) ||
        PySequence_Fast_GET_SIZE(obj) != kernel->arity) {
        PyErr_Format(PyExc_TypeError, "%s items must be tuples of %d arguments, not %.200s",
                     kernel->name, kernel->arity, Py_TYPE(obj)->tp_name);
        return -1;
    }
    /* A snapshot: parsing may run __index__, which may change a list. */
    PyObject *args = PySequence_Tuple(obj);
    if (args == NULL) {
        return -1;
    }
    int rc = -1;
    if (PyTuple_GET_SIZE(args) == kernel->arity) {
        rc = kernel->parse(&PyTuple_GET_ITEM(args, 0), item);
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s items must be tuples of %d arguments", kernel->name,
                     kernel->arity);
    }
    Py_DECREF(args);
    return rc;
}

static void
clear_items(job_t *job, Py_ssize_t from, Py_ssize_t to)
{
    if (job->kernel->clear != NULL) {
        for (Py_ssize_t i = from; i < to; i++) {
            job->kernel->clear(ITEM(job, i));
        }
    }
}

static int
choose_threads(const job_t *job, int workers)
{
    double by_work = floor(job->total_cost / THREAD_MIN_NS);
    Py_ssize_t t = workers;
    if (t > job->n) {
        t = job->n;
    }
    if (job->schedule == PARPY_SCHED_AUTO && (double)t > by_work) {
        t = by_work < 1.0 ? 1 : (Py_ssize_t)by_work;
    }
    return t < 1 ? 1 : (int)t;
}

PyObject *
parpy_run_batch(const parpy_kernel *kernel, PyObject *items, int workers, int schedule,
                Py_ssize_t chunksize, parpy_control *control)
{
    PyObject *seq = NULL, *result = NULL;
    job_t job = {.kernel = kernel, .schedule = schedule, .chunksize = chunksize};
    atomic_init(&job.cancel, 0);
    job.stop = control != NULL ? &control->cancel : NULL;
    job.progress = control != NULL ? &control->done : NULL;
    if (control != NULL && atomic_load(&control->cancel)) {
        PyErr_SetString(PyExc_RuntimeError, "the batch was cancelled before it started");
        return NULL;
    }
    Py_ssize_t prepared = 0; /* items [0, prepared) hold reserved results */

    /* A tuple, not the caller's list: parsing may run __index__, which may
       change the list under us. */
    seq = PyTuple_CheckExact(items) ? Py_NewRef(items) : PySequence_Tuple(items);
    if (seq == NULL) {
        goto done;
    }
    Py_ssize_t n = job.n = PyTuple_GET_SIZE(seq);
    if (n == 0) {
        result = PyList_New(0);
        goto done;
    }
    job.items = calloc((size_t)n, kernel->item_size);
    job.status = calloc((size_t)n, 1);
    job.costs = calloc((size_t)n, sizeof(double));
    if (job.items == NULL || job.status == NULL || job.costs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject **elements = &PyTuple_GET_ITEM(seq, 0);
    uint64_t results = 0, largest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (parse_element(kernel, elements[i], ITEM(&job, i)) < 0) {
            prefix_item_error(i);
            goto done;
        }
        job.costs[i] = kernel->cost(ITEM(&job, i));
        job.total_cost += job.costs[i];
        uint64_t bytes = kernel->result_bytes ? kernel->result_bytes(ITEM(&job, i)) : 0;
        results += bytes;
        largest = bytes > largest ? bytes : largest;
    }
    job.nthreads = choose_threads(&job, workers);

    /* Every result at once, plus the scratch of the items in flight: refused
       before anything is reserved. */
    uint64_t need = results + largest * PARPY_SCRATCH_FACTOR * job.nthreads;
    if (need >= PARPY_MEMORY_CHECK_MIN) {
        char what[96];
        snprintf(what, sizeof(what), "a batch of %zd %s results", n, kernel->name);
        if (parpy_check_memory(what, need) < 0) {
            goto done;
        }
    }
    for (; kernel->prepare != NULL && prepared < n; prepared++) {
        if (kernel->prepare(ITEM(&job, prepared)) < 0) {
            goto done;
        }
    }
    prepared = n;

    int interrupted = job_run(&job, INLINE_GIL_NS) < 0;
    if (job_check(&job, interrupted, 0) < 0) {
        goto done;
    }
    result = PyList_New(n);
    if (result == NULL) {
        goto done;
    }
    /* build consumes its item, whether it succeeds or not */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = kernel->build(ITEM(&job, i));
        if (value == NULL) {
            Py_CLEAR(result);
            clear_items(&job, i + 1, n);
            prepared = 0;
            goto done;
        }
        PyList_SET_ITEM(result, i, value);
    }
    prepared = 0;

done:
    clear_items(&job, 0, prepared); /* reserved but neither built nor cleared */
    job_free(&job);
    free(job.items);
    Py_XDECREF(seq);
    return result;
}

/* ---- thread count ------------------------------------------------------- */

static atomic_int num_threads_override = 0;

int
parpy_default_threads(void)
{
    int n = atomic_load(&num_threads_override);
    return n > 0 ? n : omp_get_max_threads();
}

void
parpy_set_num_threads(int n)
{
    atomic_store(&num_threads_override, n > 0 ? n : 0);
}

int
parpy_batch_init(void)
{
    static int done = 0;
    if (!done) {
        if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
            PyErr_SetString(PyExc_ImportError, "parpy: pthread_atfork failed");
            return -1;
        }
        done = 1;
    }
    return 0;
}

/* parpy._core.Batch: many items of one kernel, parsed at once, computed on
 * native threads, completed once.
 *
 * A batch is made with the GIL held: every item is parsed (bad input fails
 * before any work, with the position in a note), the whole batch is checked
 * against the memory budget, planned into chunks by estimated cost, and its
 * results reserved (unless they are large: then when it starts). It is then
 * computed in one of two ways, both without the GIL:
 *   - run() (parpy.map): tiny work on the calling thread with the GIL held;
 *     short serial work on the calling thread without it; anything else on
 *     a driver thread and its OpenMP team (teams.c), while the calling
 *     thread waits interruptibly. On an exception (KeyboardInterrupt) it
 *     cancels the batch, which workers poll between items and inside long
 *     items, and waits for every worker to come to rest before it returns.
 *   - queued (workqueue.c): the workers that take its helpers claim chunks
 *     until none is left; the last to finish completes it.
 * Its outcome is (True, value) or (False, exception): the list of results,
 * or the first failure; with outcomes=True one value or exception per item;
 * with call=True the one item's value or exception, exactly as the call.
 * Every parsed item is built or released exactly once.
 *
 * parpy.map makes and runs its batch in one call (parpy_batch_map), with no
 * Batch object: a short path for tiny batches. Parsed items live in a
 * window, which holds every item of a Batch. When parpy.map's parsed items
 * would take more than WINDOWED_BYTES and they are plain values (parsing
 * them twice gives the same C items), its window holds about WINDOW_BYTES:
 * every item is parsed once to validate it and count its cost and memory,
 * and released; then each window is parsed again, computed and built into
 * the list of results. So a large input needs about the memory of its
 * results, not that of every parsed item besides.
 */
#include "engine/batch.h"
#include "engine/buffers.h"

#include "engine/call.h"
#include "engine/control.h"
#include "engine/teams.h"
#include "runtime/errors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tuning ------------------------------------------------------------- */

#define INLINE_GIL_NS  2.0e4                /* batch: keep the GIL below this */
#define THREAD_MIN_NS  5.0e4                /* a thread is worth starting for this much work */
#define GRAIN_MIN_NS   2.0e4                /* smallest chunk of the default schedule */
#define DEFER_BYTES    (UINT64_C(64) << 10) /* results this large are reserved on start */
#define WINDOWED_BYTES (UINT64_C(16) << 20) /* parpy.map parses larger inputs in windows */
#define WINDOW_BYTES   (UINT64_C(1) << 20)  /* of this many bytes of parsed items */

/* A window's bytes per item besides the item: its cost, bound, held and code. */
#define WINDOW_ITEM_BYTES (sizeof(double) + sizeof(Py_ssize_t) + 2)

#define NOT_RUN      255 /* an item's code before compute */
#define PARSE_FAILED 254 /* outcomes mode: the item's exception is in errors[] */

struct parpy_batch {
    PyObject_HEAD
    const parpy_kernel *kernel;
    PyObject *kobj; /* strong: the Kernel object (its bound arguments) */
    parpy_state *st;
    Py_ssize_t n;         /* items in the window: all of them, but in parpy.map's windows */
    Py_ssize_t size;      /* items in the whole batch; -1 while unknown */
    char *items;          /* n items of kernel->item_size bytes */
    unsigned char *held;  /* per item: parsed, not yet built or released */
    unsigned char *codes; /* per item: compute's code, NOT_RUN or PARSE_FAILED */
    PyObject **errors;    /* outcomes mode: per item, the exception parse raised */
    double *costs;
    double total_cost;
    uint64_t result_bytes;  /* all results */
    uint64_t scratch_bytes; /* the most one item needs while it computes */
    int nthreads;           /* threads that compute it at once */
    int schedule;
    Py_ssize_t chunksize;
    int call;            /* one call: its value or exception, as the call gives them */
    int outcomes;        /* one outcome per item, instead of the first failure */
    Py_ssize_t start;    /* position of items[0] in the caller's input */
    atomic_int prepared; /* 1 once prepare ran, -1 if it failed */
    PyObject *prepare_error;
    int completed;          /* the outcome was taken: every item is built or released */
    parpy_control *control; /* strong reference, or NULL */
    atomic_int cancel;      /* the first failure stops the rest (not with outcomes) */
    /* the plan: chunk c covers order[bounds[c] .. bounds[c + 1]) */
    Py_ssize_t *order;  /* NULL: input order */
    Py_ssize_t *bounds; /* n + 1 */
    void *block;        /* owns the window (items, held, costs, bounds, codes), or NULL */
    Py_ssize_t nchunks;
    atomic_size_t next_chunk;
    atomic_int helpers; /* queued helpers still to finish */
    PyObject *target;   /* completion, set when queued: target._set(index, outcome) */
    PyObject *index;
};

#define ITEM(b, i) ((void *)((b)->items + (size_t)(i) * (b)->kernel->item_size))

/* "parpy.fib: a batch of n items", or for a call "parpy.fib". */
static void
describe(const parpy_batch *b, char *text, size_t size)
{
    if (b->call) {
        snprintf(text, size, "parpy.%s", b->kernel->name);
    }
    else if (b->size < 0) {
        snprintf(text, size, "parpy.%s: a batch", b->kernel->name);
    }
    else {
        snprintf(text, size, "parpy.%s: a batch of %zd items", b->kernel->name, b->size);
    }
}

/* Raises MemoryError naming what could not be allocated. */
static void
no_memory(const parpy_batch *b, uint64_t bytes, const char *what)
{
    char who[96];
    describe(b, who, sizeof(who));
    PyErr_Format(PyExc_MemoryError, "%s: cannot allocate %llu bytes for %s", who,
                 (unsigned long long)bytes, what);
}

/* The bare MemoryError of an allocation in the C API, named after b and
   what (runtime/errors.h). */
static void
name_memory_error(const parpy_batch *b, const char *what)
{
    char who[96];
    describe(b, who, sizeof(who));
    parpy_name_memory_error(who, what);
}

/* ---- computing items (no GIL) ------------------------------------------- */

static void
batch_ctx(parpy_batch *b, const atomic_int *stop, parpy_ctx *ctx)
{
    ctx->flags[0] = &b->cancel;
    ctx->flags[1] = b->control != NULL ? &b->control->cancel : NULL;
    ctx->flags[2] = stop;
}

static void
compute_item(parpy_batch *b, Py_ssize_t i, const parpy_ctx *ctx)
{
    if (b->codes[i] == PARSE_FAILED) {
        return;
    }
    if (parpy_cancelled(ctx)) {
        b->codes[i] = PARPY_CANCELLED;
        return;
    }
    int rc = b->kernel->compute(ITEM(b, i), ctx);
    b->codes[i] = (unsigned char)rc;
    if (rc != PARPY_OK && !b->outcomes) {
        atomic_store(&b->cancel, 1); /* the batch fails: stop the others */
    }
}

static inline void
count_done(parpy_batch *b, size_t n)
{
    if (b->control != NULL && n > 0) {
        atomic_fetch_add_explicit(&b->control->done, n, memory_order_relaxed);
    }
}

/* Computes chunks until none is left. */
static void
compute_chunks(parpy_batch *b, const parpy_ctx *ctx)
{
    for (;;) {
        size_t c = atomic_fetch_add_explicit(&b->next_chunk, 1, memory_order_relaxed);
        if (c >= (size_t)b->nchunks) {
            return;
        }
        for (Py_ssize_t k = b->bounds[c]; k < b->bounds[c + 1]; k++) {
            compute_item(b, b->order ? b->order[k] : k, ctx);
        }
        count_done(b, (size_t)(b->bounds[c + 1] - b->bounds[c]));
    }
}

/* ---- planning (GIL held, at construction) ------------------------------- */

typedef struct {
    double cost;
    Py_ssize_t index;
} cost_entry;

static int
compare_cost_desc(const void *a, const void *b)
{
    double x = ((const cost_entry *)a)->cost, y = ((const cost_entry *)b)->cost;
    return (x < y) - (x > y);
}

/* The default schedule: items in decreasing cost (longest first), cut into
   chunks whose cost shrinks with the work left (guided, by cost rather than
   by count). With a chunksize: chunks of that many items in input order.
   Returns 0, or -1 with MemoryError set. */
static int
plan(parpy_batch *b)
{
    Py_ssize_t n = b->n;
    b->bounds[0] = 0;
    Py_ssize_t c = 0;
    if (b->schedule != PARPY_SCHED_AUTO) {
        Py_ssize_t size = b->chunksize;
        if (size <= 0) {
            size = (n + 4 * b->nthreads - 1) / (4 * b->nthreads);
        }
        for (Py_ssize_t k = 0; k < n; k += size) {
            b->bounds[++c] = k + size < n ? k + size : n;
        }
        b->nchunks = c;
        return 0;
    }
    double lo = INFINITY, hi = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        lo = fmin(lo, b->costs[i]);
        hi = fmax(hi, b->costs[i]);
    }
    if (hi > 2.0 * lo) {
        cost_entry *entries = malloc((size_t)n * sizeof(cost_entry));
        b->order = malloc((size_t)n * sizeof(Py_ssize_t));
        if (entries == NULL || b->order == NULL) {
            free(entries);
            no_memory(b, (uint64_t)n * (sizeof(cost_entry) + sizeof(Py_ssize_t)), "its schedule");
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            entries[i].cost = b->costs[i];
            entries[i].index = i;
        }
        qsort(entries, (size_t)n, sizeof(cost_entry), compare_cost_desc);
        for (Py_ssize_t i = 0; i < n; i++) {
            b->order[i] = entries[i].index;
        }
        free(entries);
    }
    double remaining = b->total_cost;
    Py_ssize_t k = 0;
    while (k < n) {
        double target = fmax(remaining / (2.0 * b->nthreads), GRAIN_MIN_NS);
        double chunk = 0.0;
        do {
            chunk += b->costs[b->order ? b->order[k] : k];
            k++;
        } while (k < n && chunk < target);
        remaining -= chunk;
        b->bounds[++c] = k;
    }
    b->nchunks = c;
    return 0;
}

/* Threads for n items that cost b->total_cost in all. */
static int
choose_threads(const parpy_batch *b, Py_ssize_t n, int workers)
{
    double by_work = floor(b->total_cost / THREAD_MIN_NS);
    Py_ssize_t t = workers;
    if (t > n) {
        t = n;
    }
    if (b->schedule == PARPY_SCHED_AUTO && (double)t > by_work) {
        t = by_work < 1.0 ? 1 : (Py_ssize_t)by_work;
    }
    return t < 1 ? 1 : (int)t;
}

/* ---- running (run and parpy.map) -------------------------------------- */

/* One thread's part: chunks of the plan handed out dynamically, or in a
   team with a fixed schedule the items under OpenMP's runtime schedule. */
static void
batch_body(void *arg, int team)
{
    parpy_batch *b = arg;
    parpy_ctx ctx;
    batch_ctx(b, NULL, &ctx);
    if (!team || b->schedule == PARPY_SCHED_AUTO) {
        compute_chunks(b, &ctx);
        return;
    }
#pragma omp for schedule(runtime) nowait
    for (Py_ssize_t i = 0; i < b->n; i++) {
        compute_item(b, i, &ctx);
        count_done(b, 1);
    }
}

/* Computes b where its cost says it should run (teams.c). Called and
   returns with the GIL held. Returns 0, or -1 with an exception set (from
   a signal handler). */
static int
execute(parpy_batch *b, double release_ns)
{
    parpy_team_job job = {
        .body = batch_body,
        .arg = b,
        .nthreads = b->nthreads,
        .schedule = b->schedule,
        .chunksize = (int)b->chunksize,
        .cancel = &b->cancel,
    };
    return parpy_team_run(&job, b->total_cost, release_ns);
}

/* ---- outcomes (GIL held) ------------------------------------------------ */

static void
release_item(parpy_batch *b, Py_ssize_t i)
{
    if (b->held[i]) {
        b->held[i] = 0;
        if (b->kernel->release != NULL) {
            b->kernel->release(ITEM(b, i));
        }
    }
}

static void
release_all(parpy_batch *b)
{
    if (b->held == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < b->n; i++) {
        release_item(b, i);
    }
}

/* Adds "parpy.<kernel>: items[i]" to the raised exception (not for calls). */
static void
note_position(parpy_batch *b, Py_ssize_t i)
{
    if (!b->call) {
        parpy_add_note(b->st, "parpy.%s: items[%zd]", b->kernel->name, b->start + i);
    }
}

/* The outcome of item i: a new reference to its value, or NULL with its
   exception set. Consumes the item. */
static PyObject *
item_outcome(parpy_batch *b, Py_ssize_t i)
{
    if (b->codes[i] == PARSE_FAILED) {
        parpy_restore_exception(b->errors[i]);
        b->errors[i] = NULL;
        return NULL;
    }
    int code = b->codes[i] == NOT_RUN ? PARPY_CANCELLED : b->codes[i];
    if (code != PARPY_OK) {
        parpy_raise_code(b->st, b->kernel, ITEM(b, i), code);
        release_item(b, i);
        note_position(b, i);
        return NULL;
    }
    b->held[i] = 0; /* build consumes it */
    PyObject *value = b->kernel->build(ITEM(b, i));
    if (value == NULL) {
        name_memory_error(b, "a result");
        note_position(b, i);
    }
    return value;
}

/* The first failure, by input position: a kernel's own code before a
   cancellation. Returns its index, or -1 if every item succeeded. */
static Py_ssize_t
first_failure(parpy_batch *b)
{
    Py_ssize_t cancelled = -1;
    for (Py_ssize_t i = 0; i < b->n; i++) {
        int code = b->codes[i];
        if (code == PARPY_OK) {
            continue;
        }
        if (code != PARPY_CANCELLED && code != NOT_RUN) {
            return i;
        }
        if (cancelled < 0) {
            cancelled = i;
        }
    }
    return cancelled;
}

/* Returns (ok, value) as a new tuple, stealing value. */
static PyObject *
pair(int ok, PyObject *value)
{
    if (value == NULL) {
        return NULL;
    }
    PyObject *t = PyTuple_Pack(2, ok ? Py_True : Py_False, value);
    Py_DECREF(value);
    return t;
}

static PyObject *
raised_pair(void)
{
    return pair(0, parpy_fetch_exception());
}

/* Builds the window's results into list[offset ..], or fails on the
   first failure by input position (not for outcomes). Returns 0, or -1
   with that failure's exception set; every item is consumed either way. */
static int
build_into(parpy_batch *b, PyObject *list, Py_ssize_t offset)
{
    Py_ssize_t bad = first_failure(b);
    int failed = bad >= 0;
    if (failed) {
        item_outcome(b, bad); /* raises its exception */
    }
    for (Py_ssize_t i = 0; !failed && i < b->n; i++) {
        PyObject *value = item_outcome(b, i);
        failed = value == NULL; /* a build failed: the batch fails */
        if (!failed) {
            PyList_SET_ITEM(list, offset + i, value);
        }
    }
    if (failed) {
        PyObject *exc = parpy_fetch_exception();
        release_all(b);
        parpy_restore_exception(exc);
        return -1;
    }
    return 0;
}

PyObject *
parpy_batch_outcome(parpy_batch *b)
{
    if (b->completed) {
        PyErr_SetString(PyExc_RuntimeError, "the batch was completed already");
        return NULL;
    }
    b->completed = 1;
    if (atomic_load(&b->prepared) < 0) {
        release_all(b);
        return pair(0, Py_NewRef(b->prepare_error));
    }
    if (b->call) {
        PyObject *value = item_outcome(b, 0);
        return value != NULL ? pair(1, value) : raised_pair();
    }
    PyObject *list = PyList_New(b->n);
    if (list == NULL) {
        name_memory_error(b, "its list of results");
        PyObject *exc = parpy_fetch_exception();
        release_all(b);
        return pair(0, exc);
    }
    if (!b->outcomes) {
        if (build_into(b, list, 0) < 0) {
            PyObject *exc = parpy_fetch_exception();
            Py_DECREF(list);
            return pair(0, exc);
        }
        return pair(1, list);
    }
    int ok = 1;
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *value = item_outcome(b, i);
        if (value == NULL) {
            ok = 0;
            value = parpy_fetch_exception();
        }
        PyList_SET_ITEM(list, i, value);
    }
    return pair(ok, list);
}

/* ---- the queue's side --------------------------------------------------- */

int
parpy_batch_helpers(parpy_batch *b)
{
    Py_ssize_t h = b->nthreads < b->nchunks ? b->nthreads : b->nchunks;
    return h < 1 ? 1 : (int)h;
}

double
parpy_batch_cost(parpy_batch *b)
{
    return b->total_cost;
}

int
parpy_batch_deferred(parpy_batch *b)
{
    return atomic_load(&b->prepared) == 0;
}

int
parpy_batch_prepare(parpy_batch *b)
{
    int state = atomic_load(&b->prepared);
    if (state != 0) {
        return state > 0 ? 0 : -1;
    }
    for (Py_ssize_t i = 0; b->kernel->prepare != NULL && i < b->n; i++) {
        if (b->held[i] && b->kernel->prepare(ITEM(b, i)) < 0) {
            name_memory_error(b, "a result");
            note_position(b, i);
            b->prepare_error = parpy_fetch_exception();
            atomic_store(&b->prepared, -1);
            return -1;
        }
    }
    atomic_store(&b->prepared, 1);
    return 0;
}

int
parpy_batch_help(parpy_batch *b, const atomic_int *stop)
{
    if (atomic_load(&b->prepared) > 0) {
        parpy_ctx ctx;
        batch_ctx(b, stop, &ctx);
        compute_chunks(b, &ctx);
    }
    return atomic_fetch_sub(&b->helpers, 1) == 1;
}

int
parpy_batch_abandon(parpy_batch *b)
{
    return atomic_fetch_sub(&b->helpers, 1) == 1;
}

void
parpy_batch_set_target(parpy_batch *b, PyObject *target, PyObject *index)
{
    Py_XSETREF(b->target, Py_NewRef(target));
    Py_XSETREF(b->index, Py_NewRef(index));
    atomic_store(&b->helpers, parpy_batch_helpers(b));
}

PyObject *
parpy_batch_target(parpy_batch *b)
{
    return b->target;
}

PyObject *
parpy_batch_index(parpy_batch *b)
{
    return b->index;
}

/* ---- the type ----------------------------------------------------------- */

/* Parses one element of a batch into item i. Kernels that take more than
   one argument take a tuple or list of them (one that takes a single one
   may also take it bare). Returns 0 or -1 with an exception set. */
static int
parse_element(parpy_batch *b, Py_ssize_t i, PyObject *obj)
{
    const parpy_kernel *k = b->kernel;
    if (b->call) {
        return parpy_parse_call(b->kobj, ITEM(b, i), &PyTuple_GET_ITEM(obj, 0),
                                PyTuple_GET_SIZE(obj), NULL);
    }
    parpy_KernelObject *ko = (parpy_KernelObject *)b->kobj;
    int bound = ko->bound != NULL;
    if (k->max_args == 1 && ko->template == NULL) { /* the common case, kept short */
        return k->parse(ITEM(b, i), &obj);
    }
    if (bound || (k->min_args == 1 && !PyTuple_Check(obj) && !PyList_Check(obj))) {
        return parpy_parse_call(b->kobj, ITEM(b, i), &obj, 1, NULL);
    }
    if (!(PyTuple_Check(obj) || PyList_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "%s items must be tuples of %d arguments, not %.200s",
                     k->name, k->min_args, Py_TYPE(obj)->tp_name);
        return -1;
    }
    /* A snapshot: parsing may run __index__, which may change a list. */
    PyObject *args = PySequence_Tuple(obj);
    if (args == NULL) {
        return -1;
    }
    int rc = -1;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (nargs >= k->min_args && nargs <= k->max_args) {
        rc = parpy_parse_call(b->kobj, ITEM(b, i), &PyTuple_GET_ITEM(args, 0), nargs, NULL);
    }
    else if (k->min_args == k->max_args) {
        PyErr_Format(PyExc_TypeError, "%s items must be tuples of %d arguments, not %zd", k->name,
                     k->min_args, nargs);
    }
    else {
        PyErr_Format(PyExc_TypeError, "%s items must be tuples of %d to %d arguments, not %zd",
                     k->name, k->min_args, k->max_args, nargs);
    }
    Py_DECREF(args);
    return rc;
}

typedef struct {
    int workers, schedule, call, outcomes;
    Py_ssize_t chunksize, start;
    PyObject *control; /* borrowed, or NULL */
} batch_options;

static void
batch_setup(parpy_batch *b, parpy_state *st, PyObject *kernel, const batch_options *o)
{
    b->kernel = ((parpy_KernelObject *)kernel)->kernel;
    b->st = st;
    b->schedule = o->schedule;
    b->chunksize = o->chunksize;
    b->call = o->call;
    b->outcomes = o->outcomes;
    b->start = o->start;
    atomic_init(&b->cancel, 0);
    atomic_init(&b->prepared, 0);
    atomic_init(&b->next_chunk, 0);
    atomic_init(&b->helpers, 0);
}

/* ---- the window: where parsed items live --------------------------------- */

/* Lays out a window of count items at base: items | costs | bounds | held |
   codes, items and held zero-filled, codes NOT_RUN. Returns its size in
   bytes; with base NULL, only that. */
static size_t
window_layout(parpy_batch *b, Py_ssize_t count, char *base)
{
    size_t c = count > 0 ? (size_t)count : 1;
    size_t item_bytes = (b->kernel->item_size * c + 15) & ~(size_t)15;
    size_t bounds_at = item_bytes + c * sizeof(double),
           held_at = bounds_at + (c + 1) * sizeof(Py_ssize_t), codes_at = held_at + c;
    if (base != NULL) {
        b->items = memset(base, 0, item_bytes);
        b->costs = (double *)(void *)(base + item_bytes);
        b->bounds = (Py_ssize_t *)(void *)(base + bounds_at);
        b->held = memset(base + held_at, 0, c);
        b->codes = memset(base + codes_at, NOT_RUN, c);
    }
    return codes_at + c;
}

/* Allocates a window of count items (b->block). Returns 0, or -1 with
   MemoryError set. */
static int
window_alloc(parpy_batch *b, Py_ssize_t count)
{
    if ((size_t)count > (SIZE_MAX / 4) / (b->kernel->item_size + WINDOW_ITEM_BYTES + 16)) {
        no_memory(b, (uint64_t)count * (b->kernel->item_size + WINDOW_ITEM_BYTES),
                  "its parsed items");
        return -1;
    }
    size_t size = window_layout(b, count, NULL);
    if ((b->block = malloc(size)) == NULL) {
        no_memory(b, size, "its parsed items");
        return -1;
    }
    window_layout(b, count, b->block);
    return 0;
}

/* Adds an item to the batch's totals; returns its cost. */
static double
count_item(parpy_batch *b, const void *item)
{
    const parpy_kernel *k = b->kernel;
    double cost = k->cost(item);
    b->total_cost += cost;
    b->result_bytes += k->result_bytes ? k->result_bytes(item) : 0;
    uint64_t sc = k->scratch_bytes ? k->scratch_bytes(item) : 0;
    b->scratch_bytes = sc > b->scratch_bytes ? sc : b->scratch_bytes;
    return cost;
}

/* Parses seq[from .. from + count) into the window, whose items they are
   from now on (b->n = count). Returns 0, or -1 with the first bad item's
   exception set, its position noted; what was parsed is held (release_all
   releases it). */
static int
parse_window(parpy_batch *b, PyObject *seq, Py_ssize_t from, Py_ssize_t count)
{
    b->n = count;
    b->total_cost = 0.0;
    b->result_bytes = b->scratch_bytes = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (parse_element(b, i, PyTuple_GET_ITEM(seq, from + i)) < 0) {
            name_memory_error(b, "an item's arguments");
            note_position(b, i);
            if (!b->outcomes) {
                return -1;
            }
            /* one outcome per item: this one is its exception */
            if (b->errors == NULL && (b->errors = calloc(count, sizeof(PyObject *))) == NULL) {
                no_memory(b, (uint64_t)count * sizeof(PyObject *), "its items' errors");
                return -1;
            }
            b->errors[i] = parpy_fetch_exception();
            b->codes[i] = PARSE_FAILED;
            b->costs[i] = 0.0;
            continue;
        }
        b->held[i] = 1;
        b->costs[i] = count_item(b, ITEM(b, i));
    }
    return 0;
}

/* Every result at once, plus the scratch of the items in flight: refused
   before anything is reserved. */
static int
check_batch_memory(parpy_batch *b)
{
    uint64_t need = b->result_bytes + b->scratch_bytes * (uint64_t)b->nthreads;
    if (need < PARPY_MEMORY_CHECK_MIN) {
        return 0;
    }
    char what[96];
    if (b->call) {
        snprintf(what, sizeof(what), "%s", b->kernel->name);
    }
    else {
        snprintf(what, sizeof(what), "a batch of %zd %s results", b->size, b->kernel->name);
    }
    return parpy_check_memory(what, need);
}

/* The items as a tuple, not the caller's list: parsing may run __index__,
   which may change the list under us. Sets b->size. */
static PyObject *
snapshot(parpy_batch *b, PyObject *items)
{
    PyObject *seq = NULL;
    if (PyTuple_CheckExact(items)) {
        seq = Py_NewRef(items);
    }
    else if ((seq = PySequence_Tuple(items)) == NULL) {
        b->size = PyList_Check(items) ? PyList_GET_SIZE(items) : -1;
        name_memory_error(b, "a copy of its input");
        return NULL;
    }
    b->size = PyTuple_GET_SIZE(seq);
    return seq;
}

/* Makes a batch: parses every item, checks the memory, plans, prepares.
   Returns a new reference, or NULL with an exception set (what was parsed
   is released). */
static PyObject *
batch_make(PyTypeObject *type, PyObject *kernel, PyObject *items, const batch_options *o)
{
    parpy_batch *b = (parpy_batch *)type->tp_alloc(type, 0);
    if (b == NULL) {
        return NULL;
    }
    batch_setup(b, parpy_state_of(type), kernel, o);
    b->kobj = Py_NewRef(kernel);
    b->control = (parpy_control *)Py_XNewRef(o->control);

    /* A call's items are its one argument tuple. */
    b->size = 1;
    PyObject *seq = o->call ? PyTuple_Pack(1, items) : snapshot(b, items);
    if (seq == NULL) {
        goto fail;
    }
    Py_ssize_t n = b->size;
    if (window_alloc(b, n) < 0 || parse_window(b, seq, 0, n) < 0) {
        goto fail;
    }
    b->nthreads = choose_threads(b, n, o->workers);
    if (check_batch_memory(b) < 0) {
        goto fail;
    }
    if (n > 0 && plan(b) < 0) {
        goto fail;
    }
    if (b->result_bytes < DEFER_BYTES && parpy_batch_prepare(b) < 0) {
        parpy_restore_exception(Py_NewRef(b->prepare_error));
        goto fail;
    }
    Py_DECREF(seq);
    return (PyObject *)b;

fail:
    Py_XDECREF(seq);
    Py_DECREF(b); /* releases what was parsed */
    return NULL;
}

static PyObject *
batch_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"kernel",  "items", "workers",  "schedule", "chunksize",
                            "control", "call",  "outcomes", "start",    NULL};
    parpy_state *st = parpy_state_of(type);
    PyObject *kernel, *items, *control = Py_None;
    batch_options o = {.workers = 1, .schedule = PARPY_SCHED_AUTO};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O|$iinOppn:Batch", names, st->kernel_type,
                                     &kernel, &items, &o.workers, &o.schedule, &o.chunksize,
                                     &control, &o.call, &o.outcomes, &o.start)) {
        return NULL;
    }
    if (control != Py_None && !Py_IS_TYPE(control, st->control_type)) {
        PyErr_Format(PyExc_TypeError, "control must be a Control or None, not %.200s",
                     Py_TYPE(control)->tp_name);
        return NULL;
    }
    if (o.workers < 1 || o.schedule < PARPY_SCHED_AUTO || o.schedule > PARPY_SCHED_GUIDED ||
        o.chunksize < 0 || o.chunksize > INT_MAX || o.start < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "Batch: workers, schedule, chunksize or start out of range");
        return NULL;
    }
    if (o.call && !PyTuple_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "Batch: a call's items must be its argument tuple");
        return NULL;
    }
    o.control = control != Py_None ? control : NULL;
    return batch_make(type, kernel, items, &o);
}

PyObject *
parpy_batch_call(parpy_state *st, PyObject *kernel, PyObject *args, PyObject *control)
{
    if (!Py_IS_TYPE(kernel, st->kernel_type) || !PyTuple_Check(args) ||
        (control != NULL && !Py_IS_TYPE(control, st->control_type))) {
        PyErr_SetString(PyExc_TypeError, "call(kernel, args: tuple, control=None)");
        return NULL;
    }
    batch_options o = {.workers = 1, .call = 1, .control = control};
    return batch_make(st->batch_type, kernel, args, &o);
}

/* ---- parpy.map: a batch made and run in one call ------------------------- */

/* Whether parsing obj runs no Python code and reads nothing that can
   change: exact ints, floats, str, bytes and None. */
static int
plain(PyObject *obj)
{
    return PyLong_CheckExact(obj) || PyFloat_CheckExact(obj) || PyUnicode_CheckExact(obj) ||
           PyBytes_CheckExact(obj) || obj == Py_None;
}

static int
plain_tuple(PyObject *t)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        if (!plain(PyTuple_GET_ITEM(t, i))) {
            return 0;
        }
    }
    return 1;
}

/* Whether every item (plain, or a tuple of plain ones) and the kernel's
   bound arguments give the same C item each time they are parsed. */
static int
parse_the_same_twice(PyObject *kernel, PyObject *seq)
{
    PyObject *bound = ((parpy_KernelObject *)kernel)->bound;
    if (bound != NULL && !plain_tuple(bound)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(seq); i++) {
        PyObject *obj = PyTuple_GET_ITEM(seq, i);
        if (!plain(obj) && !(PyTuple_CheckExact(obj) && plain_tuple(obj))) {
            return 0;
        }
    }
    return 1;
}

/* Parses every item of seq in the window's first place and releases it at
   once: a bad item fails before any work, and the totals are the whole
   input's. Returns 0, or -1 with the bad item's exception set. */
static int
validate(parpy_batch *b, PyObject *seq)
{
    const parpy_kernel *k = b->kernel;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    void *item = ITEM(b, 0);
    for (Py_ssize_t i = 0; i < n; i++) {
        memset(item, 0, k->item_size);
        if (parse_element(b, 0, PyTuple_GET_ITEM(seq, i)) < 0) {
            name_memory_error(b, "an item's arguments");
            note_position(b, i);
            return -1;
        }
        count_item(b, item);
        if (k->release != NULL) {
            k->release(item);
        }
    }
    return 0;
}

/* Computes the window's items (prepared first) and builds their results
   into list[from ..]. Returns 0, or -1 with an exception set; every item is
   consumed or still held (release_all). */
static int
run_window(parpy_batch *b, PyObject *list, Py_ssize_t from)
{
    if (plan(b) < 0) {
        return -1;
    }
    if (parpy_batch_prepare(b) < 0) {
        parpy_restore_exception(b->prepare_error);
        b->prepare_error = NULL;
        return -1;
    }
    if (execute(b, INLINE_GIL_NS) < 0) {
        return -1;
    }
    return build_into(b, list, from);
}

const char parpy_batch_map_doc[] =
    "map(kernel, items, workers=None, schedule=None, chunksize=None, control=None, started=None, "
    "out=None, /)\n--\n\n"
    "parpy.map's batch, made and run in one call; its options are checked here as\n"
    "parpy.map documents them. An input of more than 16 MiB of parsed items whose\n"
    "items parse the same twice (plain values) is validated first, then parsed,\n"
    "computed and built 1 MiB of parsed items at a time. started(len(items)), if\n"
    "given, is called once every item is valid, before any work. A user function's\n"
    "kernel over a buffer (or into out) runs on the buffers, without Python objects.";

int
parpy_count_option(PyObject *obj, const char *name, int *out)
{
    *out = 0;
    if (obj == Py_None) {
        return 0;
    }
    if (PyBool_Check(obj) || !PyLong_Check(obj)) {
        PyObject *type = PyType_GetName(Py_TYPE(obj));
        if (type != NULL) {
            PyErr_Format(PyExc_TypeError, "%s must be an int or None, not %U", name, type);
            Py_DECREF(type);
        }
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0 || v < 1 || v > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s must be between 1 and %d, not %S", name, INT_MAX, obj);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* parpy.map's schedule: None, "static", "dynamic" or "guided". */
static int
schedule_option(PyObject *obj, int *out)
{
    static const char *const names[] = {"static", "dynamic", "guided"};
    *out = PARPY_SCHED_AUTO;
    for (int i = 0; obj != Py_None && i < 3; i++) {
        if (PyUnicode_Check(obj) && PyUnicode_CompareWithASCIIString(obj, names[i]) == 0) {
            *out = PARPY_SCHED_STATIC + i;
        }
    }
    if (obj != Py_None && *out == PARPY_SCHED_AUTO) {
        PyErr_Format(PyExc_ValueError,
                     "schedule must be 'static', 'dynamic', 'guided' or None, not %R", obj);
        return -1;
    }
    return 0;
}

PyObject *
parpy_batch_map(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    parpy_state *st = PyModule_GetState(module);
    if (nargs < 2 || nargs > 8) {
        PyErr_Format(PyExc_TypeError, "map() takes 2 to 8 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *kernel = args[0];
    PyObject *control = nargs > 5 && args[5] != Py_None ? args[5] : NULL;
    PyObject *started = nargs > 6 && args[6] != Py_None ? args[6] : NULL;
    if (!Py_IS_TYPE(kernel, st->kernel_type)) {
        PyObject *type = PyType_GetName(Py_TYPE(kernel));
        if (type != NULL) {
            PyErr_Format(PyExc_TypeError, "parpy.map runs parpy kernels (parpy.fib, ...), not %U",
                         type);
            Py_DECREF(type);
        }
        return NULL;
    }
    batch_options o = {0};
    int chunksize;
    if (schedule_option(nargs > 3 ? args[3] : Py_None, &o.schedule) < 0 ||
        parpy_count_option(nargs > 2 ? args[2] : Py_None, "workers", &o.workers) < 0 ||
        parpy_count_option(nargs > 4 ? args[4] : Py_None, "chunksize", &chunksize) < 0) {
        return NULL;
    }
    o.chunksize = chunksize;
    if (control != NULL && !Py_IS_TYPE(control, st->control_type)) {
        PyErr_SetString(PyExc_TypeError, "map: control must be a Control or None");
        return NULL;
    }
    if (o.workers == 0) {
        o.workers = parpy_default_threads();
    }
    PyObject *out = nargs > 7 && args[7] != Py_None ? args[7] : NULL;
    if (parpy_is_user_kernel(kernel) && (out != NULL || PyObject_CheckBuffer(args[1]))) {
        if (started != NULL) {
            Py_ssize_t n = PyObject_Length(args[1]); /* elements along the first axis */
            PyObject *r = n >= 0 ? PyObject_CallFunction(started, "n", n) : NULL;
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
        }
        return parpy_map_buffer(st, kernel, args[1], out, o.workers, o.chunksize,
                                (parpy_control *)control);
    }
    if (out != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "parpy.map: out= is for a user function's kernel over a buffer");
        return NULL;
    }
    if (o.chunksize > 0 && o.schedule == PARPY_SCHED_AUTO) {
        o.schedule = PARPY_SCHED_DYNAMIC; /* a chunksize without a schedule */
    }
    parpy_batch b = {0};
    batch_setup(&b, st, kernel, &o);
    b.kobj = kernel;
    b.control = (parpy_control *)control;
    PyObject *list = NULL;
    PyObject *seq = snapshot(&b, args[1]);
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq), w = n;
    size_t per_item = b.kernel->item_size + WINDOW_ITEM_BYTES;
    if ((uint64_t)n * per_item > WINDOWED_BYTES && parse_the_same_twice(kernel, seq)) {
        w = WINDOW_BYTES / per_item > 0 ? (Py_ssize_t)(WINDOW_BYTES / per_item) : 1;
    }
    if (window_alloc(&b, w) < 0) {
        goto fail;
    }
    if (w < n) { /* every item validated, and the memory checked, first */
        if (validate(&b, seq) < 0) {
            goto fail;
        }
        b.nthreads = choose_threads(&b, n, o.workers);
        if (check_batch_memory(&b) < 0) {
            goto fail;
        }
    }
    Py_ssize_t from = 0;
    do {
        Py_ssize_t count = n - from < w ? n - from : w;
        if (from > 0) {
            window_layout(&b, count, b.block);
        }
        b.start = from;
        if (parse_window(&b, seq, from, count) < 0) {
            goto fail;
        }
        b.nthreads = choose_threads(&b, count, o.workers);
        if (w == n && check_batch_memory(&b) < 0) {
            goto fail;
        }
        if (list == NULL) { /* every item is valid: the work starts */
            PyObject *r = started ? PyObject_CallFunction(started, "n", n) : Py_NewRef(Py_None);
            if (r == NULL) {
                goto fail;
            }
            Py_DECREF(r);
            if ((list = PyList_New(n)) == NULL) {
                name_memory_error(&b, "its list of results");
                goto fail;
            }
        }
        if (count > 0 && run_window(&b, list, from) < 0) {
            goto fail;
        }
        free(b.order);
        b.order = NULL;
        from += count;
        atomic_store(&b.next_chunk, 0);
        atomic_store(&b.prepared, 0);
        if (from < n && PyErr_CheckSignals() < 0) {
            goto fail;
        }
    } while (from < n);
    free(b.block);
    Py_DECREF(seq);
    return list;

fail:;
    PyObject *exc = parpy_fetch_exception();
    release_all(&b);
    free(b.order);
    free(b.block);
    Py_XDECREF(b.prepare_error);
    Py_XDECREF(list);
    Py_DECREF(seq);
    parpy_restore_exception(exc);
    name_memory_error(&b, "its results");
    return NULL;
}

static void
batch_dealloc(PyObject *op)
{
    parpy_batch *b = (parpy_batch *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (!b->completed) {
        release_all(b);
    }
    free(b->block);
    if (b->errors != NULL) {
        for (Py_ssize_t i = 0; i < b->n; i++) {
            Py_XDECREF(b->errors[i]);
        }
        free(b->errors);
    }
    free(b->order);
    Py_XDECREF(b->prepare_error);
    Py_XDECREF(b->kobj);
    Py_XDECREF(b->control);
    Py_XDECREF(b->target);
    Py_XDECREF(b->index);
    tp->tp_free(op);
    Py_DECREF(tp);
}

PyDoc_STRVAR(batch_run_doc,
             "run($self, /)\n--\n\n"
             "Compute the batch on this thread and native threads (OpenMP), with the GIL\n"
             "released, interruptibly; return its value or raise its exception.");

static PyObject *
batch_run(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    parpy_batch *b = (parpy_batch *)op;
    if (b->completed || atomic_load(&b->helpers) > 0 || atomic_load(&b->next_chunk) > 0) {
        PyErr_SetString(PyExc_RuntimeError, "a batch runs once");
        return NULL;
    }
    if (b->control != NULL && atomic_load(&b->control->cancel)) {
        PyErr_Format(b->st->cancelled_error, "%s: the batch was cancelled before it started",
                     b->kernel->name);
        return NULL;
    }
    if (b->n > 0 && parpy_batch_prepare(b) == 0 &&
        execute(b, b->call ? PARPY_CALL_RELEASE_NS : INLINE_GIL_NS) < 0) {
        return NULL; /* interrupted: the items are released with the batch */
    }
    PyObject *outcome = parpy_batch_outcome(b);
    if (outcome == NULL) {
        return NULL;
    }
    PyObject *value = Py_NewRef(PyTuple_GET_ITEM(outcome, 1));
    int ok = PyTuple_GET_ITEM(outcome, 0) == Py_True;
    Py_DECREF(outcome);
    if (!ok && !b->outcomes) {
        parpy_restore_exception(value);
        return NULL;
    }
    return value;
}

PyDoc_STRVAR(batch_costs_doc,
             "costs($self, /)\n--\n\n"
             "The kernel's estimate of each item's compute time in nanoseconds, as a list\n"
             "in input order (0.0 for an item that failed to parse): what the batch is\n"
             "planned by. Parsing, building the results and moving them are not in it.");

static PyObject *
batch_costs(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    parpy_batch *b = (parpy_batch *)op;
    PyObject *list = PyList_New(b->n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < b->n; i++) {
        PyObject *cost = PyFloat_FromDouble(b->costs[i]);
        if (cost == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, cost);
    }
    return list;
}

static PyObject *
batch_get_tiny(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((parpy_batch *)op)->total_cost < INLINE_GIL_NS);
}

static Py_ssize_t
batch_length(PyObject *op)
{
    return ((parpy_batch *)op)->n;
}

static PyMethodDef batch_methods[] = {
    {"run", batch_run, METH_NOARGS, batch_run_doc},
    {"costs", batch_costs, METH_NOARGS, batch_costs_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef batch_getset[] = {
    {"tiny", batch_get_tiny, NULL,
     "True when computing it here with the GIL held costs less than handing it over.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot batch_slots[] = {
    {Py_tp_new, batch_new},
    {Py_tp_dealloc, batch_dealloc},
    {Py_tp_methods, batch_methods},
    {Py_tp_getset, batch_getset},
    {Py_sq_length, batch_length},
    {Py_tp_doc,
     "Batch(kernel, items, *, workers=1, schedule=0, chunksize=0, control=None, "
     "call=False, outcomes=False, start=0)\n--\n\n"
     "Items of one kernel, parsed and validated now, computed on native threads:\n"
     "by run(), or by the workers of a WorkQueue it is submitted to."},
    {0, NULL},
};

static PyType_Spec batch_spec = {
    .name = "parpy._core.Batch",
    .basicsize = sizeof(parpy_batch),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = batch_slots,
};

PyTypeObject *
parpy_batch_type_new(PyObject *module)
{
    return (PyTypeObject *)PyType_FromModuleAndSpec(module, &batch_spec, NULL);
}

/* parpy._core: the kernel contract, shared structs and prototypes.
 *
 * No GMP here: the Fibonacci kernels' GMP support is parpy_gmp.h.
 *
 * A kernel is a table of functions over one C item (parpy_kernel below).
 * Batches of items (batch.c) are computed on native threads: OpenMP teams
 * for parpy.map, the workers of a work queue (workqueue.c) for the pools.
 */
#ifndef PARPY_H
#define PARPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- ThreadSanitizer annotations ---------------------------------------- */

/* Happens-before edges that TSan cannot see by itself: GNU OpenMP's region
   entry and exit are futexes and atomics inside uninstrumented libgomp.
   What a thread did before PARPY_HAPPENS_BEFORE(addr) happens before what
   another thread does after a later PARPY_HAPPENS_AFTER(addr) on the same
   address. No-ops unless built with PARPY_SANITIZE=thread. */
#ifdef PARPY_TSAN
#include <sanitizer/tsan_interface.h>
#define PARPY_HAPPENS_BEFORE(addr) __tsan_release((void *)(addr))
#define PARPY_HAPPENS_AFTER(addr)  __tsan_acquire((void *)(addr))
/* Leaves a function (and the OpenMP regions outlined from it) out of TSan's
   instrumentation. Only for the hand-off of a region's arguments. */
#define PARPY_NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define PARPY_HAPPENS_BEFORE(addr) ((void)(addr))
#define PARPY_HAPPENS_AFTER(addr)  ((void)(addr))
#define PARPY_NO_TSAN
#endif

/* ---- C values passed from one kernel to the next ------------------------ */

/* A kernel's output, handed to another kernel's input without making a
   Python object. Its layout is the value type's; it fits in here. */
#define PARPY_VALUE_SIZE 32
typedef union {
    unsigned char bytes[PARPY_VALUE_SIZE];
    max_align_t align;
} parpy_value;

typedef struct parpy_value_type {
    const char *name;
    /* Frees a value that no kernel took. No GIL. */
    void (*drop)(parpy_value *value);
} parpy_value_type;

/* "text": UTF-8 in a malloc'd buffer that the value owns. */
typedef struct {
    char *data;
    size_t len;
} parpy_text;
extern const parpy_value_type parpy_value_text;

/* ---- the kernel contract ------------------------------------------------ */

/* What compute returns. PARPY_OK and PARPY_CANCELLED mean the same for every
   kernel; a kernel defines its own codes from PARPY_CODE_FIRST up (below
   256) and names the exception of each in its errors table. */
enum {
    PARPY_OK = 0,
    PARPY_CANCELLED = 1,
    PARPY_CODE_FIRST = 2,
};

typedef struct {
    int code;        /* 0 ends the table */
    PyObject **type; /* e.g. &PyExc_MemoryError */
    const char *message;
} parpy_error;

/* Passed to compute: the flags that cancel the item's call. */
#define PARPY_CTX_FLAGS 3
typedef struct {
    const atomic_int *flags[PARPY_CTX_FLAGS]; /* any non-zero cancels; NULL: unused */
} parpy_ctx;

/* The monotonic clock, in nanoseconds. */
static inline int64_t
parpy_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* A spin-wait's pause: the CPU's hint that this thread waits on another. */
static inline void
parpy_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int
parpy_cancelled(const parpy_ctx *ctx)
{
    for (int i = 0; i < PARPY_CTX_FLAGS; i++) {
        if (ctx->flags[i] != NULL && atomic_load_explicit(ctx->flags[i], memory_order_relaxed)) {
            return 1;
        }
    }
    return 0;
}

/* An item's life: parse (or take), then optionally prepare, then compute,
   then build (or give); release is called exactly once for every parsed or
   taken item that is not built, whatever stopped it (a sibling's parse
   failed, the memory check refused the batch, it was cancelled, it failed,
   its result was given to the next kernel, its work was dropped). The
   driver zero-fills an item before parse or take. */
typedef struct parpy_kernel {
    const char *name;
    const char *doc; /* "name(sig)\n--\n\n...": the signature is read from here */
    int min_args;    /* Python arguments of one item */
    int max_args;    /* at most 4 */
    /* Keyword names of the arguments (max_args entries, NULL where an
       argument is positional-only), or NULL when all are. */
    const char *const *keywords;
    size_t item_size; /* bytes of one item; large state may live out of line */
    /* Once, at import (GIL held). May add constants to the module. Returns
       0, or -1 with an exception set. May be NULL. */
    int (*init)(PyObject *module);
    /* GIL held. Fills item from args[0..max_args) (NULL for an omitted
       optional argument), validating everything; may take references and
       allocate. Returns 0, or -1 with an exception set and the item holding
       nothing. */
    int (*parse)(void *item, PyObject *const *args);
    /* GIL held. kernel.bind(*args): validates the trailing arguments
       args[first..max_args) (NULL where omitted) as parse does, and writes
       what they fix into item, which then holds plain C data only (no
       references, no allocations): it is the bound kernel's template,
       copied into every item before take. Returns 0, or -1 with an
       exception set. NULL: nothing can be bound. */
    int (*bind)(void *item, PyObject *const *args, int first);
    /* No GIL. Fills item (zero, or a bound kernel's template) from *value,
       a value of type input, which it now owns: the first argument.
       Returns PARPY_OK, or a code (the value is then dropped by take, and
       the item holds nothing). NULL when input is NULL. */
    int (*take)(void *item, parpy_value *value);
    const parpy_value_type *input;
    /* No GIL. Estimated nanoseconds of compute, for scheduling. */
    double (*cost)(const void *item);
    /* No GIL. Bytes of the Python result, and bytes of working memory while
       it computes: checked against the memory budget before anything is
       reserved. NULL: small. */
    uint64_t (*result_bytes)(const void *item);
    uint64_t (*scratch_bytes)(const void *item);
    /* GIL held, after parse, only when the result will be built: reserves
       its memory. Returns 0, or -1 with an exception set. May be NULL. */
    int (*prepare)(void *item);
    /* No GIL, no Python API. At most once per item. Returns PARPY_OK,
       PARPY_CANCELLED or one of the kernel's codes. */
    int (*compute)(void *item, const parpy_ctx *ctx);
    /* GIL held, after compute returned PARPY_OK. Returns a new reference, or
       NULL with an exception set; either way the item is consumed (release
       is not called). */
    PyObject *(*build)(void *item);
    /* No GIL, after compute returned PARPY_OK and without prepare: moves the
       result out as a value of type output. The item is released after.
       NULL when output is NULL. */
    void (*give)(void *item, parpy_value *value);
    const parpy_value_type *output;
    /* Releases what the item holds. GIL held for items from parse; items
       from take hold no Python references and are released without it.
       May be NULL. */
    void (*release)(void *item);
    const parpy_error *errors; /* the kernel's codes, ended by {0} */
} parpy_kernel;

/* The kernels, one line each: parpy_kernel_<name> is defined in its own .c
   file and appears in parpy._core (and parpy) as <name>. */
#define PARPY_KERNELS(X) \
    X(fib)               \
    X(fib_iterative)     \
    X(fib_recursive)     \
    X(fib_mod)           \
    X(to_decimal)        \
    X(extract_links)

#define PARPY_DECLARE_KERNEL(name) extern const parpy_kernel parpy_kernel_##name;
PARPY_KERNELS(PARPY_DECLARE_KERNEL)

/* ---- module state ------------------------------------------------------- */

typedef struct {
    PyTypeObject *kernel_type;
    PyTypeObject *control_type;
    PyTypeObject *batch_type;
    PyTypeObject *queue_type;
    PyTypeObject *pyqueue_type;
    PyTypeObject *pipeline_type;
    PyObject *cancelled_error; /* parpy._core.Cancelled, a RuntimeError */
    PyObject *empty_error;     /* queue.Empty */
    PyObject *full_error;      /* queue.Full */
    PyObject *shutdown_error;  /* queue.ShutDown (3.13+), else parpy's own */
    PyObject *str_set;         /* "_set": the completion method of results */
    PyObject *str_add_note;
} parpy_state;

/* The state of parpy._core, from any of its types. */
parpy_state *parpy_state_of(PyTypeObject *type);

/* ---- per-call control (control.c) --------------------------------------- */

typedef struct {
    PyObject_HEAD
    atomic_int cancel;  /* set from any thread: the call's workers stop */
    atomic_size_t done; /* items finished, counted by the workers */
    PyObject *weakrefs; /* the pool that started the call keeps a weak set */
} parpy_control;

PyTypeObject *parpy_control_type_new(PyObject *module);

/* ---- kernels as Python objects (kernel.c) ------------------------------- */

typedef struct {
    PyObject_HEAD
    const parpy_kernel *kernel;
    vectorcallfunc vectorcall;
    PyObject *bound; /* kernel.bind(*args): the trailing arguments (a tuple), or NULL */
    void *template;  /* what take fills: zeros, or what bind wrote (item_size bytes) */
} parpy_KernelObject;

PyTypeObject *parpy_kernel_type_new(PyObject *module);
PyObject *parpy_kernel_new(PyTypeObject *type, const parpy_kernel *kernel);

/* No GIL. Takes *value (owned) into item as kernel, a Kernel object, takes
   its first argument: item is filled from the kernel's template, then by
   take. Returns PARPY_OK or take's code. */
int parpy_take(PyObject *kernel, void *item, parpy_value *value);
/* Whether kernel, a Kernel object, can take values of type output as its
   only argument (its other arguments bound). */
int parpy_kernel_takes(PyObject *kernel, const parpy_value_type *output);

/* Raises the exception of a code compute returned (kernel-defined, or
   Cancelled for PARPY_CANCELLED). */
void parpy_raise_code(parpy_state *st, const parpy_kernel *kernel, int code);

/* Adds a note to the raised exception (which stays raised). */
void parpy_add_note(parpy_state *st, const char *format, ...);

/* ---- batches (batch.c) -------------------------------------------------- */

enum {
    PARPY_SCHED_AUTO = 0,
    PARPY_SCHED_STATIC = 1,
    PARPY_SCHED_DYNAMIC = 2,
    PARPY_SCHED_GUIDED = 3,
};

typedef struct parpy_batch parpy_batch;

PyTypeObject *parpy_batch_type_new(PyObject *module);
/* A batch of one call, kernel(*args): as Batch(kernel, args, call=True,
   control=control); control may be NULL. Returns a new reference, or NULL
   with an exception set. */
PyObject *parpy_batch_call(parpy_state *st, PyObject *kernel, PyObject *args, PyObject *control);

/* The work queue's side of a batch. A batch queued with n helpers is
   computed by the workers that take them; the last to finish completes it. */
int parpy_batch_helpers(parpy_batch *b);  /* helpers it should be queued with */
double parpy_batch_cost(parpy_batch *b);  /* estimated nanoseconds in all */
int parpy_batch_deferred(parpy_batch *b); /* must be prepared (GIL) before compute */
int parpy_batch_prepare(parpy_batch *b);  /* GIL held; 0, or -1 (the batch then fails) */
/* No GIL: computes chunks until none is left; returns 1 for the helper
   that finished last (it then completes the batch), else 0. */
int parpy_batch_help(parpy_batch *b, const atomic_int *stop);
/* GIL held: a helper that will not run; returns 1 if it was the last. */
int parpy_batch_abandon(parpy_batch *b);
/* GIL held: the outcome, (True, value) or (False, exception), as a new
   reference; NULL with an exception set only if even that failed. */
PyObject *parpy_batch_outcome(parpy_batch *b);
/* The completion target and index given at submit (borrowed). */
void parpy_batch_set_target(parpy_batch *b, PyObject *target, PyObject *index);
PyObject *parpy_batch_target(parpy_batch *b);
PyObject *parpy_batch_index(parpy_batch *b);

/* parpy._core.map(kernel, items, workers, schedule, chunksize, control,
   started), METH_FASTCALL: parpy.map's batch, made and run in one call. */
PyObject *parpy_batch_map(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char parpy_batch_map_doc[];

/* Raises MemoryError, naming what, if need bytes exceed the memory budget
   (the smaller of physical memory and the address-space/data limits).
   Returns 0, or -1 with the exception set. */
int parpy_check_memory(const char *what, uint64_t need);
#define PARPY_MEMORY_CHECK_MIN (UINT64_C(16) << 20)

/* Threads a batch uses when workers is not given. */
int parpy_default_threads(void);
void parpy_set_num_threads(int n); /* n <= 0 restores the default */
int parpy_batch_init(void);        /* once per process; -1 with an exception set */

/* Runs one parsed item (a kernel call): computes it, releasing the GIL when
   it is worth it and interruptibly when it is long, and builds its result.
   Returns a new reference, or NULL with an exception set; the item is
   consumed either way. */
PyObject *parpy_run_one(parpy_state *st, const parpy_kernel *kernel, void *item);

/* Parses one call's arguments (vectorcall convention) into item: those of
   kernel, a Kernel object, followed by its bound ones. Returns 0, or -1 with
   an exception set and the item holding nothing. */
int parpy_parse_call(PyObject *kernel, void *item, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames);

/* ---- the bounded queue (ring.c) ----------------------------------------- */

/* A plain-C multi-producer multi-consumer FIFO of pointers: no Python
   inside. Bounded by maxsize (0: unbounded); pushes block while it is full
   and pops while it is empty, each up to a timeout, without the GIL (the
   caller releases it). close() lets consumers drain what is left; stop()
   makes every push and pop fail at once.
   A ring made before the process forked belongs to the parent's threads
   (one of them may have held its lock at the fork): in the child it is
   inert, its lock never taken; it reads as stopped, and destroy only frees
   its slots. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **slots; /* circular, capacity slots */
    size_t capacity, head, count;
    size_t maxsize;
    int closed, stopped;
    int waiting_pop;     /* consumers blocked in pop */
    int waiting_push;    /* producers blocked in push */
    unsigned generation; /* parpy_fork_generation() when it was made */
} parpy_ring;

enum {
    PARPY_RING_OK = 0,
    PARPY_RING_TIMEOUT = 1, /* full (push) or empty (pop) until the timeout */
    PARPY_RING_CLOSED = 2,  /* push: closed; pop: closed and empty */
    PARPY_RING_STOPPED = 3,
    PARPY_RING_NOMEM = 4,
};

/* Forks this process descends from since parpy was loaded; 0 in the
   process that loaded it. parpy_fork_init registers the counting (once). */
unsigned parpy_fork_generation(void);
int parpy_fork_init(void); /* 0, or -1 if pthread_atfork failed */

int parpy_ring_init(parpy_ring *q, size_t maxsize); /* 0, or -1 (errno) */
/* Whether q was made before a fork: in the parent's threads, not ours. */
int parpy_ring_inherited(const parpy_ring *q);
/* Raises RuntimeError naming what (e.g. "parpy.Queue") and returns -1 if
   q is inherited; else returns 0. GIL held. */
static inline int
parpy_ring_check_owned(const parpy_ring *q, const char *what)
{
    if (!parpy_ring_inherited(q)) {
        return 0;
    }
    PyErr_Format(PyExc_RuntimeError,
                 "%s was made before this process was forked: it belongs to the parent's "
                 "threads and cannot be used in the child (make a new one here)",
                 what);
    return -1;
}
void parpy_ring_destroy(parpy_ring *q);
/* timeout_ns < 0: wait as long as it takes; 0: do not wait. */
int parpy_ring_push(parpy_ring *q, void *item, int64_t timeout_ns);
int parpy_ring_pop(parpy_ring *q, void **item, int64_t timeout_ns);
void parpy_ring_close(parpy_ring *q);
void parpy_ring_stop(parpy_ring *q);
/* Removes every item; returns how many went to fn(item, arg). */
size_t parpy_ring_drain(parpy_ring *q, void (*fn)(void *item, void *arg), void *arg);
/* Calls fn(item, arg) on each item in order, under the lock, until fn
   returns non-zero; returns that. fn must not use the ring. */
int parpy_ring_foreach(parpy_ring *q, int (*fn)(void *item, void *arg), void *arg);
size_t parpy_ring_size(parpy_ring *q);
int parpy_ring_waiting(parpy_ring *q); /* consumers blocked in pop */
int parpy_ring_closed(parpy_ring *q);
void parpy_ring_set_maxsize(parpy_ring *q, size_t maxsize);

/* ---- the work queue (workqueue.c) and parpy.Queue (queue.c) ------------ */

PyTypeObject *parpy_queue_type_new(PyObject *module);
PyTypeObject *parpy_pyqueue_type_new(PyObject *module);

/* ---- native pipelines (pipeline.c) -------------------------------------- */

PyTypeObject *parpy_pipeline_type_new(PyObject *module);

/* ---- the concurrency lab (lab.c) ---------------------------------------- */

/* Module functions (METH_VARARGS): the native half of parpy.lab. */
PyObject *parpy_lab_race(PyObject *module, PyObject *args);
PyObject *parpy_lab_deadlock(PyObject *module, PyObject *args);
PyObject *parpy_lab_starvation(PyObject *module, PyObject *args);
PyObject *parpy_lab_reduce(PyObject *module, PyObject *args);
extern const char parpy_lab_race_doc[], parpy_lab_deadlock_doc[], parpy_lab_starvation_doc[],
    parpy_lab_reduce_doc[];

/* ---- shared helpers ----------------------------------------------------- */

/* Takes the raised exception: returns a new reference to it, normalised and
   carrying its traceback, and clears the error indicator. */
PyObject *parpy_fetch_exception(void);
/* Raises exc (a new reference, stolen). */
void parpy_restore_exception(PyObject *exc);

#endif /* PARPY_H */

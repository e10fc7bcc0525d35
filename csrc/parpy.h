/* parpy._core: shared structs and prototypes.
 *
 * A kernel is a table of functions over one C item:
 *   parse   (GIL held)  Python argument(s) -> C item, validating everything;
 *   prepare (GIL held)  reserve the result's memory (after a whole batch is
 *                       parsed and its total size checked);
 *   cost    (no GIL)    estimated nanoseconds, used for scheduling;
 *   compute (no GIL)    the work itself: pure C, no Python API;
 *   build   (GIL held)  C item -> Python result;
 *   clear   (GIL held)  release what prepare reserved when build will not run.
 * The batch driver (batch.c) runs compute over many items on native threads.
 */
#ifndef PARPY_H
#define PARPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <gmp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

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

/* ---- error codes recorded by native code, per item --------------------- */

enum {
    PARPY_OK = 0,
    PARPY_ECANCELLED = 1, /* the call was cancelled (KeyboardInterrupt, or another item failed) */
    PARPY_ENOMEM = 2,     /* GMP could not allocate its working memory */
};

/* ---- execution context passed to compute ------------------------------- */

typedef struct {
    /* Non-zero once the call is cancelled. Kernels poll it between items
       and, for long items, inside the computation. */
    const atomic_int *cancel;
} parpy_ctx;

static inline int
parpy_cancelled(const parpy_ctx *ctx)
{
    return atomic_load_explicit(ctx->cancel, memory_order_relaxed);
}

/* ---- kernels ------------------------------------------------------------ */

#define PARPY_ITEM_MAX 64 /* bytes; every kernel's item fits */

/* GMP's operands and scratch while one item computes, in multiples of the
   size of its result. */
#define PARPY_SCRATCH_FACTOR 4

typedef struct parpy_kernel {
    const char *name;
    const char *doc;       /* "name(sig)\n--\n\n..." */
    const char *signature; /* "(n, /)" */
    int arity;             /* Python arguments per item: 1, or 2 (items are tuples in batches) */
    size_t item_size;
    /* Fills *item from args[0..arity), validating everything; allocates
       nothing. Returns 0, or -1 with an exception set. */
    int (*parse)(PyObject *const *args, void *item);
    /* Bytes the result will take (0 for results of 64 bits). May be NULL. */
    uint64_t (*result_bytes)(const void *item);
    /* Reserves the result's memory, after parse. Returns 0, or -1 with an
       exception set and nothing to clear. May be NULL. */
    int (*prepare)(void *item);
    double (*cost)(const void *item);
    /* Returns PARPY_OK or an error code. Called at most once per item. */
    int (*compute)(void *item, const parpy_ctx *ctx);
    /* Returns a new reference, or NULL with an exception set. Either way the
       item's resources are released. */
    PyObject *(*build)(void *item);
    /* Releases what prepare reserved, when build will not run. May be NULL. */
    void (*clear)(void *item);
} parpy_kernel;

extern const parpy_kernel parpy_kernel_fib;
extern const parpy_kernel parpy_kernel_fib_iterative;
extern const parpy_kernel parpy_kernel_fib_recursive;
extern const parpy_kernel parpy_kernel_fib_mod;

/* ---- module state ------------------------------------------------------- */

typedef struct {
    PyTypeObject *kernel_type;
    PyTypeObject *control_type;
    PyTypeObject *queue_type;
    /* interned names of the concurrent.futures.Future methods */
    PyObject *str_set_running;
    PyObject *str_set_result;
    PyObject *str_set_exception;
    PyObject *str_cancel;
} parpy_state;

/* ---- per-call control (control.c) --------------------------------------- */

typedef struct {
    PyObject_HEAD
    atomic_int cancel;  /* set from any thread: the call's workers stop */
    atomic_size_t done; /* items finished, counted by the workers */
    PyObject *weakrefs; /* the pool that started the call keeps a weak set */
} parpy_control;

PyTypeObject *parpy_control_type_new(PyObject *module);

/* ---- work queue (queue.c) ----------------------------------------------- */

PyTypeObject *parpy_queue_type_new(PyObject *module);

typedef struct {
    PyObject_HEAD
    const parpy_kernel *kernel;
    vectorcallfunc vectorcall;
} parpy_KernelObject;

/* kernel.c */
PyTypeObject *parpy_kernel_type_new(PyObject *module);
PyObject *parpy_kernel_new(PyTypeObject *type, const parpy_kernel *kernel);
/* kernel(*args) on one item: checks the count, parses, runs (control, may be
   NULL, cancels it from another thread). Returns a new reference, or NULL
   with an exception set. */
PyObject *parpy_kernel_call(const parpy_kernel *kernel, PyObject *const *args, Py_ssize_t nargs,
                            parpy_control *control);

/* ---- batch driver (batch.c) -------------------------------------------- */

enum {
    PARPY_SCHED_AUTO = 0,
    PARPY_SCHED_STATIC = 1,
    PARPY_SCHED_DYNAMIC = 2,
    PARPY_SCHED_GUIDED = 3,
};

/* Runs kernel over items, a sequence. control (may be NULL) cancels the
   batch from another thread and counts its finished items. Returns a new
   list, or NULL with an exception set (bad item, MemoryError,
   KeyboardInterrupt, RuntimeError when cancelled, ...). */
PyObject *parpy_run_batch(const parpy_kernel *kernel, PyObject *items, int workers, int schedule,
                          Py_ssize_t chunksize, parpy_control *control);

/* Takes the raised exception: returns a new reference to it, normalised
   and carrying its traceback, and clears the error indicator. */
PyObject *parpy_fetch_exception(void);

/* Runs one item already parsed into item: computes it (releasing the GIL,
   interruptibly when it is long) and builds the result. control (may be
   NULL) cancels it from another thread. Returns a new reference, or NULL
   with an exception set; the item is always consumed. */
PyObject *parpy_run_one(const parpy_kernel *kernel, void *item, parpy_control *control);

/* Threads a batch uses when workers is not given. */
int parpy_default_threads(void);
void parpy_set_num_threads(int n); /* n <= 0 restores the default */
int parpy_batch_init(void);        /* once per process; -1 with an exception set */

/* ---- GMP memory (gmpmem.c) ---------------------------------------------- */

/* Installs allocation functions that let compute recover from a failed GMP
   allocation (GMP itself aborts). Does nothing if someone else already
   replaced GMP's defaults. */
void parpy_gmp_memory_init(void);

#define PARPY_MEMORY_CHECK_MIN (UINT64_C(16) << 20)

/* Raises MemoryError, naming what, if need bytes exceed the memory budget.
   Returns 0, or -1 with the exception set. */
int parpy_check_memory(const char *what, uint64_t need);

/* Returns the memory, in bytes, that one computation may reasonably use:
   the smaller of physical memory and the address-space/data limits. */
uint64_t parpy_memory_budget(void);

#include <setjmp.h>
/* Static TLS: one slot per thread, no dynamic TLS block (which also keeps
   LeakSanitizer's scan of dynamic TLS, broken on recent glibc, away). */
#define PARPY_TLS_MODEL __attribute__((tls_model("initial-exec")))
/* Per-thread recovery point for a failed GMP allocation; NULL when none. */
extern _Thread_local jmp_buf *parpy_gmp_recover PARPY_TLS_MODEL;

/* ---- int conversion (intconv.c) ----------------------------------------- */

/* A Python int being written without the GIL. Create it with the GIL held,
   fill it from an mpz without the GIL, finish or discard it with the GIL. */
typedef struct {
    void *handle;    /* owned: the int (or PyLongWriter) under construction */
    void *digits;    /* its digit array, least significant first */
    size_t capacity; /* in digits */
    size_t used;     /* digits filled by parpy_intbuf_store */
} parpy_intbuf;

/* Reserves room for a non-negative int of at most nbits bits. Returns 0, or
   -1 with MemoryError set. */
int parpy_intbuf_alloc(parpy_intbuf *buf, uint64_t nbits);
/* Without the GIL. Returns 0, or -1 if z does not fit the reservation. */
int parpy_intbuf_store(parpy_intbuf *buf, mpz_srcptr z);
/* Returns a new reference to the int (NULL with an exception set on
   failure); the buffer is released either way. */
PyObject *parpy_intbuf_finish(parpy_intbuf *buf);
void parpy_intbuf_discard(parpy_intbuf *buf);
/* Checks at import that CPython's int layout is the one assumed here.
   Returns 0, or -1 with an exception set. */
int parpy_intconv_init(void);

/* ---- Fibonacci kernels (fib.c) ------------------------------------------ */

void parpy_fib_init(void); /* once, from module exec */

/* Parses a Python int into a uint64 argument named name. bool, float and
   other non-ints raise TypeError, negatives ValueError, values of 2**64 and
   more OverflowError. Returns 0 or -1 with an exception set. */
int parpy_parse_u64(PyObject *obj, const char *name, uint64_t *out);

#endif /* PARPY_H */

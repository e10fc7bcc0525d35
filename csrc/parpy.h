/* parpy._core: the kernel contract.
 *
 * A kernel is a table of functions over one C item (parpy_kernel below);
 * it is one .c file in kernels/ and one line in PARPY_KERNELS. Kernels see
 * this header and the runtime (runtime/), nothing else: the engine
 * (engine/) computes batches of their items on native threads, the Kernel
 * type (objects/kernel.c) makes them Python callables.
 *
 * No GMP here: the Fibonacci kernels' GMP support is kernels/parpy_gmp.h.
 */
#ifndef PARPY_H
#define PARPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

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

/* "text": UTF-8 in a malloc'd buffer that the value owns (kernels/values.c). */
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

/* The most Python arguments one item takes. */
#define PARPY_MAX_ARGS 4

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
    int max_args;    /* at most PARPY_MAX_ARGS */
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
    /* A single call's workers= (parpy.fib(n, workers=k)); both NULL when
       the kernel computes an item on one thread. No GIL: the threads item
       can use, at most workers (>= 1); 1 where splitting would not gain. */
    int (*split_threads)(const void *item, int workers);
    /* No GIL, no Python API. Computes item on every thread of a team of
       nthreads (as split_threads said, >= 2) at once; parpy_team_barrier
       and parpy_team_thread (engine/teams.h) coordinate them. The code
       returned on thread 0 counts, as compute's. */
    int (*compute_split)(void *item, const parpy_ctx *ctx, int nthreads);
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

#endif /* PARPY_H */

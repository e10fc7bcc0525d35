/* Fibonacci kernels: fib (fast doubling), fib_iterative (the book's loop),
 * fib_recursive (naive recursion on 64-bit integers), fib_mod (F(n) mod m).
 */
#include "parpy.h"

#include <math.h>
#include <stdio.h>

/* ---- limits ------------------------------------------------------------- */

#define LOG2_PHI      0.69424191363061737991 /* F(n) has about n * LOG2_PHI bits */
#define FIB_U64_MAX_N 93                     /* largest n with F(n) < 2**64 */

/* mpz sizes are ints counting 64-bit limbs: stay well inside 2**37 bits. */
#define FIB_MAX_BITS ((UINT64_C(1) << 37) - (UINT64_C(1) << 24))
#define FIB_MAX_N    ((uint64_t)(FIB_MAX_BITS / LOG2_PHI))

/* Calls of fib_recursive at or above this n poll for cancellation. */
#define RECURSIVE_POLL_N 24
/* fib_iterative polls every this many additions. */
#define ITERATIVE_POLL_MASK 63

static uint64_t fib_table[FIB_U64_MAX_N + 1];

static void
fib_table_init(void)
{
    uint64_t a = 0, b = 1;
    for (int i = 0; i <= FIB_U64_MAX_N; i++) {
        fib_table[i] = a;
        uint64_t t = a + b;
        a = b;
        b = t;
    }
}

/* Upper bound on the bit length of F(n), n > FIB_U64_MAX_N. */
static uint64_t
fib_bits(uint64_t n)
{
    return (uint64_t)ceil((double)n * LOG2_PHI) + 2;
}

/* ---- argument parsing --------------------------------------------------- */

int
parpy_parse_u64(PyObject *obj, const char *name, uint64_t *out)
{
    if (PyBool_Check(obj) || !(PyLong_Check(obj) || PyIndex_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *value = PyNumber_Index(obj); /* strong reference */
    if (value == NULL) {
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    int rc = -1;
    if (v == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (overflow == 0 && v >= 0) {
        *out = (uint64_t)v;
        rc = 0;
    }
    else if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0, not %S", name, value);
    }
    else {
        unsigned long long u = PyLong_AsUnsignedLongLong(value);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_OverflowError, "%s must be < 2**64, not %S", name, value);
            goto done;
        }
        *out = (uint64_t)u;
        rc = 0;
    }
done:
    Py_DECREF(value);
    return rc;
}

/* Checks that F(n) can be represented and computed here. Returns 0, or -1
   with OverflowError or MemoryError set. */
static int
check_fib_size(const char *func, uint64_t n)
{
    if (n > FIB_MAX_N) {
        PyErr_Format(PyExc_OverflowError,
                     "%s(n) for n > %llu does not fit in a GMP integer, got n=%llu", func,
                     (unsigned long long)FIB_MAX_N, (unsigned long long)n);
        return -1;
    }
    uint64_t need = fib_bits(n) / 8 * (1 + PARPY_SCRATCH_FACTOR);
    if (need < PARPY_MEMORY_CHECK_MIN) {
        return 0;
    }
    char what[64];
    snprintf(what, sizeof(what), "%s(%llu)", func, (unsigned long long)n);
    return parpy_check_memory(what, need);
    return 0;
}

/* ---- big results: fib and fib_iterative -------------------------------- */

typedef struct {
    uint64_t n;
    uint64_t small;   /* the value when n <= FIB_U64_MAX_N */
    parpy_intbuf out; /* reserved only when n > FIB_U64_MAX_N */
} big_item;

static int
big_parse(const char *func, PyObject *const *args, void *p)
{
    big_item *it = p;
    it->out.handle = NULL;
    if (parpy_parse_u64(args[0], "n", &it->n) < 0) {
        return -1;
    }
    if (it->n <= FIB_U64_MAX_N) {
        return 0;
    }
    return check_fib_size(func, it->n);
}

static uint64_t
big_result_bytes(const void *p)
{
    const big_item *it = p;
    return it->n <= FIB_U64_MAX_N ? 0 : fib_bits(it->n) / 8;
}

static int
big_prepare(void *p)
{
    big_item *it = p;
    return it->n <= FIB_U64_MAX_N ? 0 : parpy_intbuf_alloc(&it->out, fib_bits(it->n));
}

static PyObject *
big_build(void *p)
{
    big_item *it = p;
    if (it->n <= FIB_U64_MAX_N) {
        return PyLong_FromUnsignedLongLong(it->small);
    }
    return parpy_intbuf_finish(&it->out);
}

static void
big_clear(void *p)
{
    big_item *it = p;
    parpy_intbuf_discard(&it->out);
}

/* Stores z into the item's reserved int. Returns PARPY_OK or an error code. */
static int
big_store(big_item *it, mpz_srcptr z)
{
    /* The reservation is an upper bound on F(n)'s size, so this holds. */
    return parpy_intbuf_store(&it->out, z) == 0 ? PARPY_OK : PARPY_ENOMEM;
}

/* fib: fast doubling (GMP's mpz_fib_ui). */

static int
fib_parse(PyObject *const *args, void *p)
{
    return big_parse("fib", args, p);
}

static double
fib_cost(const void *p)
{
    const big_item *it = p;
    if (it->n <= FIB_U64_MAX_N) {
        return 5.0;
    }
    /* A few multiplications of n * LOG2_PHI bits; fitted on GMP 6.2, x86-64. */
    double limbs = (double)it->n * LOG2_PHI / 64.0;
    return 150.0 + 0.6 * limbs * log2(limbs + 2.0) * log2(limbs + 2.0);
}

static int
fib_compute(void *p, const parpy_ctx *ctx)
{
    big_item *it = p;
    (void)ctx;
    if (it->n <= FIB_U64_MAX_N) {
        it->small = fib_table[it->n];
        return PARPY_OK;
    }
    mpz_t z;
    mpz_init(z); /* allocates nothing */
    jmp_buf recover;
    if (setjmp(recover)) {
        mpz_clear(z);
        return PARPY_ENOMEM;
    }
    parpy_gmp_recover = &recover;
    mpz_fib_ui(z, (unsigned long)it->n);
    parpy_gmp_recover = NULL;
    int rc = big_store(it, z);
    mpz_clear(z);
    return rc;
}

/* fib_iterative: a, b = b, a + b, n times, on GMP integers. */

static int
fib_iterative_parse(PyObject *const *args, void *p)
{
    return big_parse("fib_iterative", args, p);
}

static double
fib_iterative_cost(const void *p)
{
    const big_item *it = p;
    double n = (double)it->n;
    /* n additions of numbers growing to n * LOG2_PHI bits. */
    return 5.0 + 6.0 * n + 0.25 * n * n * LOG2_PHI / 64.0 / 2.0;
}

static int
fib_iterative_compute(void *p, const parpy_ctx *ctx)
{
    big_item *it = p;
    uint64_t n = it->n;
    if (n <= FIB_U64_MAX_N) {
        uint64_t a = 0, b = 1;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t t = a + b;
            a = b;
            b = t;
        }
        it->small = a;
        return PARPY_OK;
    }
    mpz_t a, b;
    mpz_init(a);
    mpz_init(b);
    int rc = PARPY_OK;
    jmp_buf recover;
    if (setjmp(recover)) {
        rc = PARPY_ENOMEM;
        goto done;
    }
    parpy_gmp_recover = &recover;
    /* Room for the last values up front: the loop never reallocates. */
    mpz_realloc2(a, fib_bits(n) + 64);
    mpz_realloc2(b, fib_bits(n) + 64);
    mpz_set_ui(a, 0);
    mpz_set_ui(b, 1);
    for (uint64_t i = 0; i < n; i++) {
        if ((i & ITERATIVE_POLL_MASK) == 0 && parpy_cancelled(ctx)) {
            rc = PARPY_ECANCELLED;
            break;
        }
        mpz_add(a, a, b);
        mpz_swap(a, b);
    }
    parpy_gmp_recover = NULL;
    if (rc == PARPY_OK) {
        rc = big_store(it, a);
    }
done:
    mpz_clear(a);
    mpz_clear(b);
    return rc;
}

/* ---- 64-bit results: fib_recursive and fib_mod -------------------------- */

typedef struct {
    uint64_t n;
    uint64_t m;
    uint64_t value;
} u64_item;

static PyObject *
u64_build(void *p)
{
    return PyLong_FromUnsignedLongLong(((u64_item *)p)->value);
}

/* fib_recursive: fib(n - 1) + fib(n - 2), exponential on purpose. */

static int
fib_recursive_parse(PyObject *const *args, void *p)
{
    u64_item *it = p;
    if (parpy_parse_u64(args[0], "n", &it->n) < 0) {
        return -1;
    }
    if (it->n > FIB_U64_MAX_N) {
        PyErr_Format(PyExc_OverflowError,
                     "fib_recursive computes on 64-bit integers: n must be <= %d, not %llu",
                     FIB_U64_MAX_N, (unsigned long long)it->n);
        return -1;
    }
    return 0;
}

static double
fib_recursive_cost(const void *p)
{
    const u64_item *it = p;
    /* 2 F(n+1) - 1 calls of about a nanosecond; F(n+1) ~ phi**(n+1) / sqrt(5). */
    return 5.0 + 0.4 * pow(1.6180339887498949, (double)it->n + 1.0);
}

static uint64_t
fib_recursive_c(unsigned n, const atomic_int *cancel)
{
    if (n < 2) {
        return n;
    }
    if (n >= RECURSIVE_POLL_N && atomic_load_explicit(cancel, memory_order_relaxed)) {
        return 0;
    }
    return fib_recursive_c(n - 1, cancel) + fib_recursive_c(n - 2, cancel);
}

static int
fib_recursive_compute(void *p, const parpy_ctx *ctx)
{
    u64_item *it = p;
    it->value = fib_recursive_c((unsigned)it->n, ctx->cancel);
    return parpy_cancelled(ctx) ? PARPY_ECANCELLED : PARPY_OK;
}

/* fib_mod: fast doubling modulo m, with 128-bit products. */

static int
fib_mod_parse(PyObject *const *args, void *p)
{
    u64_item *it = p;
    if (parpy_parse_u64(args[0], "n", &it->n) < 0 || parpy_parse_u64(args[1], "m", &it->m) < 0) {
        return -1;
    }
    if (it->m == 0) {
        PyErr_SetString(PyExc_ValueError, "m must be >= 1, not 0");
        return -1;
    }
    return 0;
}

static double
fib_mod_cost(const void *p)
{
    const u64_item *it = p;
    return 20.0 + 8.0 * log2((double)it->n + 2.0);
}

typedef unsigned __int128 u128;

static uint64_t
fib_mod_c(uint64_t n, uint64_t m)
{
    /* (a, b) = (F(k), F(k+1)) mod m while k walks the bits of n from the top:
       F(2k) = F(k) (2 F(k+1) - F(k)),  F(2k+1) = F(k)^2 + F(k+1)^2. */
    uint64_t a = 0, b = 1 % m;
    int top = n ? 63 - __builtin_clzll(n) : -1;
    for (int bit = top; bit >= 0; bit--) {
        uint64_t twice_b = (uint64_t)(((u128)b * 2) % m);
        uint64_t t = twice_b >= a ? twice_b - a : twice_b + (m - a);
        uint64_t c = (uint64_t)(((u128)a * t) % m);
        uint64_t a2 = (uint64_t)(((u128)a * a) % m);
        uint64_t b2 = (uint64_t)(((u128)b * b) % m);
        uint64_t d = (uint64_t)(((u128)a2 + b2) % m);
        if ((n >> bit) & 1) {
            a = d;
            b = (uint64_t)(((u128)c + d) % m);
        }
        else {
            a = c;
            b = d;
        }
    }
    return a;
}

static int
fib_mod_compute(void *p, const parpy_ctx *ctx)
{
    u64_item *it = p;
    (void)ctx;
    it->value = fib_mod_c(it->n, it->m);
    return PARPY_OK;
}

/* ---- kernel tables ------------------------------------------------------ */

const parpy_kernel parpy_kernel_fib = {
    .name = "fib",
    .doc =
        "fib(n, /)\n--\n\n"
        "Return the n-th Fibonacci number F(n) exactly, by fast doubling on GMP.\n\n"
        "F(0) = 0, F(1) = 1. The GIL is released while large values are computed.\n"
        "Raises TypeError for a non-int (bool and float included), ValueError for\n"
        "n < 0, OverflowError or MemoryError when F(n) cannot be represented or\n"
        "does not fit in memory.",
    .signature = "(n, /)",
    .arity = 1,
    .item_size = sizeof(big_item),
    .parse = fib_parse,
    .result_bytes = big_result_bytes,
    .prepare = big_prepare,
    .cost = fib_cost,
    .compute = fib_compute,
    .build = big_build,
    .clear = big_clear,
};

const parpy_kernel parpy_kernel_fib_iterative = {
    .name = "fib_iterative",
    .doc =
        "fib_iterative(n, /)\n--\n\n"
        "Return F(n) by the loop a, b = b, a + b, run n times on GMP integers.\n\n"
        "Linear in n additions: the like-for-like twin of the pure-Python loop.\n"
        "Interruptible with Ctrl-C. Same errors as fib().",
    .signature = "(n, /)",
    .arity = 1,
    .item_size = sizeof(big_item),
    .parse = fib_iterative_parse,
    .result_bytes = big_result_bytes,
    .prepare = big_prepare,
    .cost = fib_iterative_cost,
    .compute = fib_iterative_compute,
    .build = big_build,
    .clear = big_clear,
};

const parpy_kernel parpy_kernel_fib_recursive = {
    .name = "fib_recursive",
    .doc =
        "fib_recursive(n, /)\n--\n\n"
        "Return F(n) by the naive recursion fib(n - 1) + fib(n - 2) on 64-bit\n"
        "integers: exponential time, the classic CPU-bound demonstration.\n\n"
        "0 <= n <= 93 (F(93) is the largest value below 2**64); larger n raise\n"
        "OverflowError. Interruptible with Ctrl-C.",
    .signature = "(n, /)",
    .arity = 1,
    .item_size = sizeof(u64_item),
    .parse = fib_recursive_parse,
    .cost = fib_recursive_cost,
    .compute = fib_recursive_compute,
    .build = u64_build,
    .clear = NULL,
};

const parpy_kernel parpy_kernel_fib_mod = {
    .name = "fib_mod",
    .doc =
        "fib_mod(n, m, /)\n--\n\n"
        "Return F(n) mod m for 0 <= n < 2**64 and 1 <= m < 2**64, in O(log n).\n\n"
        "In batches each item is an (n, m) pair.",
    .signature = "(n, m, /)",
    .arity = 2,
    .item_size = sizeof(u64_item),
    .parse = fib_mod_parse,
    .cost = fib_mod_cost,
    .compute = fib_mod_compute,
    .build = u64_build,
    .clear = NULL,
};

/* Called once from module exec. */
void
parpy_fib_init(void)
{
    fib_table_init();
}

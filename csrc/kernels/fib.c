/* Fibonacci kernels: fib (fast doubling), fib_iterative (the book's loop),
 * fib_recursive (naive recursion on 64-bit integers), fib_mod (F(n) mod m).
 */
#include "engine/teams.h"
#include "kernels/divide.h"
#include "parpy_gmp.h"
#include "runtime/errors.h"

#include <math.h>
#include <stdio.h>

/* ---- limits ------------------------------------------------------------- */

#define FIB_U64_MAX_N 93 /* largest n with F(n) < 2**64 */

/* mpz sizes are ints counting 64-bit limbs: stay well inside 2**37 bits. */
#define FIB_MAX_BITS ((UINT64_C(1) << 37) - (UINT64_C(1) << 24))
#define FIB_MAX_N    ((uint64_t)(FIB_MAX_BITS / PARPY_LOG2_PHI))

/* GMP's operands and scratch while one item computes, in multiples of the
   size of its result. */
#define FIB_SCRATCH_FACTOR 4

/* compute's code for a failed GMP allocation; take's for an n it refuses. */
#define FIB_ENOMEM    PARPY_CODE_FIRST
#define FIB_ENEGATIVE (PARPY_CODE_FIRST + 1)
#define FIB_ERANGE    (PARPY_CODE_FIRST + 2)

static const parpy_error fib_errors[] = {
    {FIB_ENOMEM, &PyExc_MemoryError, "out of memory (GMP allocation failed)"},
    {FIB_ENEGATIVE, &PyExc_ValueError, "n must be >= 0"},
    {FIB_ERANGE, &PyExc_OverflowError, "n must be < 2**64"},
    {0, NULL, NULL},
};

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
    return (uint64_t)ceil((double)n * PARPY_LOG2_PHI) + 2;
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
    uint64_t need = fib_bits(n) / 8 * (1 + FIB_SCRATCH_FACTOR);
    if (need < PARPY_MEMORY_CHECK_MIN) {
        return 0;
    }
    char what[64];
    snprintf(what, sizeof(what), "%s(%llu)", func, (unsigned long long)n);
    return parpy_check_memory(what, need);
}

/* ---- big results: fib and fib_iterative -------------------------------- */

/* The result is small when n <= FIB_U64_MAX_N; else an mpz, stored straight
   into a reserved Python int when prepared, kept for give otherwise. */
typedef struct {
    uint64_t n;
    uint64_t small;
    parpy_intbuf out; /* reserved by prepare, when n > FIB_U64_MAX_N */
    mpz_t z;          /* the result, when computed without a reservation */
    int have_z;
    parpy_fib_split *split; /* the team's shared state, while fib computes on several threads */
} big_item;

static int
big_parse(const char *func, void *p, PyObject *const *args)
{
    big_item *it = p;
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

static uint64_t
big_scratch_bytes(const void *p)
{
    return big_result_bytes(p) * FIB_SCRATCH_FACTOR;
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
    if (it->have_z) { /* not prepared: convert now */
        int rc = parpy_intbuf_alloc(&it->out, mpz_sizeinbase(it->z, 2));
        if (rc == 0) {
            rc = parpy_intbuf_store(&it->out, it->z);
        }
        mpz_clear(it->z);
        it->have_z = 0;
        if (rc < 0) {
            parpy_intbuf_discard(&it->out);
            return PyErr_Occurred() ? NULL : PyErr_NoMemory();
        }
    }
    return parpy_intbuf_finish(&it->out);
}

static void
big_give(void *p, parpy_value *value)
{
    big_item *it = p;
    mpz_ptr z = parpy_value_mpz_ptr(value);
    if (it->have_z) {
        *z = *it->z; /* moved: the item no longer owns it */
        it->have_z = 0;
    }
    else {
        mpz_init_set_ui(z, (unsigned long)it->small);
    }
}

static void
big_release(void *p)
{
    big_item *it = p;
    parpy_intbuf_discard(&it->out);
    if (it->have_z) {
        mpz_clear(it->z);
        it->have_z = 0;
    }
}

/* Keeps z (an initialised mpz, consumed) as the item's result. Returns
   PARPY_OK or an error code. */
static int
big_store(big_item *it, mpz_ptr z)
{
    if (it->out.handle == NULL) {
        *it->z = *z;
        it->have_z = 1;
        return PARPY_OK;
    }
    /* The reservation is an upper bound on F(n)'s size, so this holds. */
    int rc = parpy_intbuf_store(&it->out, z) == 0 ? PARPY_OK : FIB_ENOMEM;
    mpz_clear(z);
    return rc;
}

static int
fib_init(PyObject *module)
{
    fib_table_init();
    return parpy_gmp_init(module);
}

/* fib: fast doubling (GMP's mpz_fib_ui). */

static int
fib_parse(void *p, PyObject *const *args)
{
    return big_parse("fib", p, args);
}

static double
fib_cost(const void *p)
{
    const big_item *it = p;
    if (it->n <= FIB_U64_MAX_N) {
        return 5.0;
    }
    /* A few multiplications of n * PARPY_LOG2_PHI bits; fitted on GMP 6.2, x86-64. */
    double limbs = (double)it->n * PARPY_LOG2_PHI / 64.0;
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
        return FIB_ENOMEM;
    }
    parpy_gmp_recover = &recover;
    mpz_fib_ui(z, (unsigned long)it->n);
    parpy_gmp_recover = NULL;
    return big_store(it, z);
}

static int
fib_split_threads(const void *p, int workers)
{
    const big_item *it = p;
    return it->n <= FIB_U64_MAX_N ? 1 : parpy_fib_split_threads(it->n, workers);
}

static int
fib_compute_split(void *p, const parpy_ctx *ctx, int nthreads)
{
    big_item *it = p;
    mpz_t z;
    mpz_init(z); /* allocates nothing; thread 0's is the result */
    int code = parpy_fib_split_run(&it->split, z, it->n, nthreads, ctx, NULL);
    if (parpy_team_thread() != 0) {
        return code;
    }
    if (code != PARPY_OK) {
        mpz_clear(z);
        return code == PARPY_DC_NOMEM ? FIB_ENOMEM : code;
    }
    return big_store(it, z);
}

/* fib_iterative: a, b = b, a + b, n times, on GMP integers. */

static int
fib_iterative_parse(void *p, PyObject *const *args)
{
    return big_parse("fib_iterative", p, args);
}

static double
fib_iterative_cost(const void *p)
{
    const big_item *it = p;
    double n = (double)it->n;
    /* n additions of numbers growing to n * PARPY_LOG2_PHI bits. */
    return 5.0 + 6.0 * n + 0.25 * n * n * PARPY_LOG2_PHI / 64.0 / 2.0;
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
        rc = FIB_ENOMEM;
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
            rc = PARPY_CANCELLED;
            break;
        }
        mpz_add(a, a, b);
        mpz_swap(a, b);
    }
    parpy_gmp_recover = NULL;
    if (rc == PARPY_OK) {
        mpz_clear(b);
        return big_store(it, a);
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

static void
u64_give(void *p, parpy_value *value)
{
    mpz_ptr z = parpy_value_mpz_ptr(value);
    uint64_t v = ((u64_item *)p)->value;
    mpz_init(z);
    mpz_import(z, 1, -1, sizeof(v), 0, 0, &v);
}

/* fib_recursive: fib(n - 1) + fib(n - 2), exponential on purpose. */

static int
fib_recursive_parse(void *p, PyObject *const *args)
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
fib_recursive_c(unsigned n, const parpy_ctx *ctx)
{
    if (n < 2) {
        return n;
    }
    if (n >= RECURSIVE_POLL_N && parpy_cancelled(ctx)) {
        return 0;
    }
    return fib_recursive_c(n - 1, ctx) + fib_recursive_c(n - 2, ctx);
}

static int
fib_recursive_compute(void *p, const parpy_ctx *ctx)
{
    u64_item *it = p;
    it->value = fib_recursive_c((unsigned)it->n, ctx);
    return parpy_cancelled(ctx) ? PARPY_CANCELLED : PARPY_OK;
}

/* fib_mod: fast doubling modulo m, with 128-bit products. */

static int
parse_modulus(PyObject *arg, uint64_t *m)
{
    if (parpy_parse_u64(arg, "m", m) < 0) {
        return -1;
    }
    if (*m == 0) {
        PyErr_SetString(PyExc_ValueError, "m must be >= 1, not 0");
        return -1;
    }
    return 0;
}

static int
fib_mod_parse(void *p, PyObject *const *args)
{
    u64_item *it = p;
    return parpy_parse_u64(args[0], "n", &it->n) < 0 ? -1 : parse_modulus(args[1], &it->m);
}

static int
fib_mod_bind(void *p, PyObject *const *args, int first)
{
    return first <= 1 ? parse_modulus(args[1], &((u64_item *)p)->m) : 0;
}

/* fib_mod takes n as an mpz (fib's output, and its own). */
static int
u64_take(void *p, parpy_value *value)
{
    mpz_ptr z = parpy_value_mpz_ptr(value);
    u64_item *it = p;
    int code = PARPY_OK;
    if (mpz_sgn(z) < 0) {
        code = FIB_ENEGATIVE;
    }
    else if (mpz_sizeinbase(z, 2) > 64) {
        code = FIB_ERANGE;
    }
    else {
        it->n = 0;
        mpz_export(&it->n, NULL, -1, sizeof(it->n), 0, 0, z);
    }
    mpz_clear(z);
    return code;
}

static double
fib_mod_cost(const void *p)
{
    const u64_item *it = p;
    /* About four 128-bit remainders a bit of n; fitted on x86-64 (GCC's __umodti3). */
    return 20.0 + 19.0 * log2((double)it->n + 2.0);
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

#define BIG_KERNEL_FIELDS                                                                         \
    .min_args = 1, .max_args = 1, .item_size = sizeof(big_item), .init = fib_init,                \
    .result_bytes = big_result_bytes, .scratch_bytes = big_scratch_bytes, .prepare = big_prepare, \
    .build = big_build, .give = big_give, .output = &parpy_value_mpz, .release = big_release,     \
    .errors = fib_errors

const parpy_kernel parpy_kernel_fib = {
    .name = "fib",
    .doc =
        "fib(n, /, *, workers=None)\n--\n\n"
        "Return the n-th Fibonacci number F(n) exactly, by fast doubling on GMP.\n"
        "\n"
        "F(0) = 0, F(1) = 1. The GIL is released while large values are computed.\n"
        "A single call of a large F(n) (n from about 3 million, see workers) runs\n"
        "each doubling step's two squarings on two threads (six threads: each\n"
        "squaring split in three); below that, or with one worker, GMP's\n"
        "mpz_fib_ui on one thread. A split call stops on Ctrl-C between steps.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "n : int\n"
        "    The index, 0 <= n < 2**64.\n"
        "workers : int, optional\n"
        "    Threads this call may use (in a single call, not in batches). By\n"
        "    default get_num_threads(). F(n) of fewer than 2**21 bits (n below\n"
        "    about 3 million) uses one thread whatever workers says; above it,\n"
        "    two threads, or six from six workers up.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "int\n"
        "    F(n).\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    If n is not an int (bool and float included).\n"
        "ValueError\n"
        "    If n < 0.\n"
        "OverflowError\n"
        "    If n >= 2**64, or F(n) would not fit in a GMP integer.\n"
        "MemoryError\n"
        "    If F(n) does not fit in this process's memory.",
    .parse = fib_parse,
    .cost = fib_cost,
    .compute = fib_compute,
    .split_threads = fib_split_threads,
    .compute_split = fib_compute_split,
    BIG_KERNEL_FIELDS,
};

const parpy_kernel parpy_kernel_fib_iterative = {
    .name = "fib_iterative",
    .doc =
        "fib_iterative(n, /)\n--\n\n"
        "Return F(n) by the loop a, b = b, a + b, run n times on GMP integers.\n"
        "\n"
        "Linear in n additions: the like-for-like twin of the pure-Python loop.\n"
        "Interruptible with Ctrl-C.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "n : int\n"
        "    The index, 0 <= n < 2**64.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "int\n"
        "    F(n).\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    If n is not an int (bool and float included).\n"
        "ValueError\n"
        "    If n < 0.\n"
        "OverflowError\n"
        "    If n >= 2**64, or F(n) would not fit in a GMP integer.\n"
        "MemoryError\n"
        "    If F(n) does not fit in this process's memory.\n"
        "KeyboardInterrupt\n"
        "    On Ctrl-C, between steps of the loop.",
    .parse = fib_iterative_parse,
    .cost = fib_iterative_cost,
    .compute = fib_iterative_compute,
    BIG_KERNEL_FIELDS,
};

const parpy_kernel parpy_kernel_fib_recursive = {
    .name = "fib_recursive",
    .doc =
        "fib_recursive(n, /)\n--\n\n"
        "Return F(n) by the naive recursion on 64-bit integers, in exponential time.\n"
        "\n"
        "fib(n - 1) + fib(n - 2): the classic CPU-bound demonstration. F(93) is the\n"
        "largest value below 2**64. Interruptible with Ctrl-C.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "n : int\n"
        "    The index, 0 <= n <= 93.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "int\n"
        "    F(n).\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    If n is not an int (bool and float included).\n"
        "ValueError\n"
        "    If n < 0.\n"
        "OverflowError\n"
        "    If n > 93.\n"
        "KeyboardInterrupt\n"
        "    On Ctrl-C, during the recursion.",
    .min_args = 1,
    .max_args = 1,
    .item_size = sizeof(u64_item),
    .init = fib_init,
    .parse = fib_recursive_parse,
    .cost = fib_recursive_cost,
    .compute = fib_recursive_compute,
    .build = u64_build,
    .give = u64_give,
    .output = &parpy_value_mpz,
    .errors = fib_errors,
};

const parpy_kernel parpy_kernel_fib_mod = {
    .name = "fib_mod",
    .doc =
        "fib_mod(n, m, /)\n--\n\n"
        "Return F(n) mod m, in O(log n) steps on 64-bit integers.\n"
        "\n"
        "In batches each item is an (n, m) pair; fib_mod.bind(m) is the kernel\n"
        "n -> F(n) mod m.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "n : int\n"
        "    The index, 0 <= n < 2**64.\n"
        "m : int\n"
        "    The modulus, 1 <= m < 2**64.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "int\n"
        "    F(n) mod m.\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    If n or m is not an int (bool and float included).\n"
        "ValueError\n"
        "    If n < 0 or m < 1.\n"
        "OverflowError\n"
        "    If n or m is 2**64 or more.",
    .min_args = 2,
    .max_args = 2,
    .item_size = sizeof(u64_item),
    .init = fib_init,
    .parse = fib_mod_parse,
    .bind = fib_mod_bind,
    .take = u64_take,
    .input = &parpy_value_mpz,
    .cost = fib_mod_cost,
    .compute = fib_mod_compute,
    .build = u64_build,
    .give = u64_give,
    .output = &parpy_value_mpz,
    .errors = fib_errors,
};

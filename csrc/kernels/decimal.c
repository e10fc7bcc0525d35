/* to_decimal: the decimal digits of any int, by GMP's subquadratic
 * conversion (mpz_get_str), with the GIL released and no
 * sys.int_max_str_digits limit.
 *
 * The int is read without the GIL through a view of its digits (parse holds
 * a reference), or taken as an mpz from the kernel before it (fib). When the
 * result will be a Python str, prepare reserves it and compute writes the
 * digits straight into it; otherwise they go to a malloc'd buffer that give
 * hands on as "text".
 */
#include "engine/teams.h"
#include "kernels/divide.h"
#include "parpy_gmp.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC_ENOMEM PARPY_CODE_FIRST

static const parpy_error dec_errors[] = {
    {DEC_ENOMEM, &PyExc_MemoryError, "out of memory (GMP allocation failed)"},
    {0, NULL, NULL},
};

/* mpz sizes are ints counting 64-bit limbs: stay well inside 2**37 bits. */
#define DEC_MAX_BITS ((UINT64_C(1) << 37) - (UINT64_C(1) << 24))
#define LOG10_2      0.30102999566398119521

typedef struct {
    parpy_intview view; /* from parse */
    mpz_t z;            /* from take */
    int have_z;
    uint64_t bits;
    PyObject *out; /* the str reserved by prepare, cap characters */
    size_t cap;
    char *text; /* the digits, when not prepared */
    size_t len;
    parpy_dec_split *split; /* the team's shared state, while it converts on several threads */
} dec_item;

/* Characters of the decimal form of a bits-bit number, sign included: at
   least mpz_sizeinbase(z, 10) + 1. */
static size_t
dec_chars(uint64_t bits)
{
    return (size_t)((double)bits * LOG10_2) + 3;
}

static int
dec_parse(void *p, PyObject *const *args)
{
    dec_item *it = p;
    PyObject *x = args[0];
    if (PyBool_Check(x) || !PyLong_Check(x)) {
        PyErr_Format(PyExc_TypeError, "x must be an int, not %.200s", Py_TYPE(x)->tp_name);
        return -1;
    }
    if (parpy_intview_init(&it->view, x) < 0) {
        return -1;
    }
    it->bits = parpy_intview_bits(&it->view);
    if (it->bits > DEC_MAX_BITS) {
        PyErr_Format(PyExc_OverflowError,
                     "to_decimal: an int of %llu bits does not fit in a GMP integer",
                     (unsigned long long)it->bits);
        parpy_intview_release(&it->view);
        return -1;
    }
    uint64_t need = dec_chars(it->bits) + it->bits / 8 * 5;
    if (need >= PARPY_MEMORY_CHECK_MIN) {
        char what[80];
        snprintf(what, sizeof(what), "to_decimal of a %llu-bit int", (unsigned long long)it->bits);
        if (parpy_check_memory(what, need) < 0) {
            parpy_intview_release(&it->view);
            return -1;
        }
    }
    return 0;
}

static int
dec_take(void *p, parpy_value *value)
{
    dec_item *it = p;
    *it->z = *parpy_value_mpz_ptr(value); /* moved */
    it->have_z = 1;
    it->bits = mpz_sizeinbase(it->z, 2);
    return PARPY_OK;
}

static double
dec_cost(const void *p)
{
    const dec_item *it = p;
    double limbs = (double)it->bits / 64.0;
    /* Subquadratic: divisions by powers of ten; fitted on GMP 6.2, x86-64. */
    return 100.0 + 2.0 * limbs * log2(limbs + 2.0) * log2(limbs + 2.0);
}

static uint64_t
dec_result_bytes(const void *p)
{
    return dec_chars(((const dec_item *)p)->bits);
}

static uint64_t
dec_scratch_bytes(const void *p)
{
    /* the mpz, and GMP's powers of ten and remainders */
    return ((const dec_item *)p)->bits / 8 * 4;
}

static int
dec_prepare(void *p)
{
    dec_item *it = p;
    it->cap = dec_chars(it->bits);
    it->out = PyUnicode_New((Py_ssize_t)it->cap, 127);
    return it->out == NULL ? -1 : 0;
}

/* it->z holds x: take gave it, or it is read now from parse's view.
   Returns 0, or -1 if GMP's allocation failed (z then holds nothing). */
static int
dec_load(dec_item *it)
{
    if (it->have_z) {
        return 0;
    }
    jmp_buf recover;
    if (setjmp(recover)) {
        return -1;
    }
    parpy_gmp_recover = &recover;
    mpz_init(it->z);
    parpy_intview_to_mpz(&it->view, it->z);
    parpy_gmp_recover = NULL;
    it->have_z = 1;
    return 0;
}

static int
dec_compute(void *p, const parpy_ctx *ctx)
{
    dec_item *it = p;
    (void)ctx;
    if (dec_load(it) < 0) {
        return DEC_ENOMEM;
    }
    jmp_buf recover;
    if (setjmp(recover)) {
        return DEC_ENOMEM; /* what was allocated is released by release */
    }
    parpy_gmp_recover = &recover;
    size_t need = mpz_sizeinbase(it->z, 10) + 2; /* sign and NUL */
    char *buf;
    if (it->out != NULL) {
        buf = need <= it->cap + 1 ? PyUnicode_DATA(it->out) : NULL;
    }
    else {
        buf = it->text = malloc(need);
    }
    if (buf == NULL) {
        parpy_gmp_recover = NULL;
        return DEC_ENOMEM;
    }
    mpz_get_str(buf, 10, it->z);
    parpy_gmp_recover = NULL;
    it->len = strlen(buf);
    mpz_clear(it->z);
    it->have_z = 0;
    return PARPY_OK;
}

static int
dec_split_threads(const void *p, int workers)
{
    return parpy_dec_split_threads(((const dec_item *)p)->bits, workers);
}

/* The digits by divide and conquer (kernels/divide.c), then into the
   reserved str or text as dec_compute puts them. */
static int
dec_compute_split(void *p, const parpy_ctx *ctx, int nthreads)
{
    dec_item *it = p;
    int t = parpy_team_thread();
    if (t == 0) {
        dec_load(it);
    }
    parpy_team_barrier();
    if (!it->have_z) {
        return DEC_ENOMEM; /* on every thread */
    }
    char *digits = NULL;
    size_t len = 0;
    int code = parpy_dec_split_run(&it->split, it->z, &digits, &len, nthreads, ctx, NULL);
    if (t != 0) {
        return code;
    }
    if (code != PARPY_OK) {
        return code == PARPY_DC_NOMEM ? DEC_ENOMEM : code;
    }
    if (it->out != NULL) {
        if (len > it->cap) {
            free(digits);
            return DEC_ENOMEM;
        }
        memcpy(PyUnicode_DATA(it->out), digits, len);
        free(digits);
    }
    else {
        it->text = digits;
    }
    it->len = len;
    mpz_clear(it->z);
    it->have_z = 0;
    return PARPY_OK;
}

static void
dec_release(void *p)
{
    dec_item *it = p;
    parpy_intview_release(&it->view);
    if (it->have_z) {
        mpz_clear(it->z);
        it->have_z = 0;
    }
    Py_CLEAR(it->out);
    free(it->text);
    it->text = NULL;
}

static PyObject *
dec_build(void *p)
{
    dec_item *it = p;
    PyObject *result = NULL;
    if (it->out != NULL) {
        result = it->out;
        it->out = NULL;
        if ((size_t)PyUnicode_GET_LENGTH(result) != it->len &&
            PyUnicode_Resize(&result, (Py_ssize_t)it->len) < 0) {
            result = NULL; /* PyUnicode_Resize released it */
        }
    }
    else {
        result = PyUnicode_DecodeASCII(it->text, (Py_ssize_t)it->len, NULL);
    }
    dec_release(it);
    return result;
}

static void
dec_give(void *p, parpy_value *value)
{
    dec_item *it = p;
    parpy_text *t = (parpy_text *)(void *)value->bytes;
    t->data = it->text;
    t->len = it->len;
    it->text = NULL;
}

static int
dec_init(PyObject *module)
{
    return parpy_gmp_init(module);
}

const parpy_kernel parpy_kernel_to_decimal = {
    .name = "to_decimal",
    .doc =
        "to_decimal(x, /, *, workers=None)\n--\n\n"
        "Return the decimal digits of the int x as a str, equal to str(x).\n"
        "\n"
        "By GMP's subquadratic conversion with the GIL released and no\n"
        "sys.int_max_str_digits limit. Negative ints start with '-'. A single\n"
        "call on a large int splits it by shared powers of ten, 10**(c * 2**i),\n"
        "into halves that convert on separate threads, down to pieces of at\n"
        "most 2**15 digits that GMP converts. Interruptible with Ctrl-C.\n"
        "\n"
        "Parameters\n"
        "----------\n"
        "x : int\n"
        "    Any int (a subclass converts as its int value).\n"
        "workers : int, optional\n"
        "    Threads this call may use (in a single call, not in batches). By\n"
        "    default get_num_threads(). An int of fewer than 2**20 bits (about\n"
        "    316,000 digits) converts on one thread whatever workers says.\n"
        "\n"
        "Returns\n"
        "-------\n"
        "str\n"
        "    The digits of x, as str(int(x)).\n"
        "\n"
        "Raises\n"
        "------\n"
        "TypeError\n"
        "    If x is not an int (bool included).\n"
        "MemoryError\n"
        "    If the digits do not fit in this process's memory.",
    .min_args = 1,
    .max_args = 1,
    .item_size = sizeof(dec_item),
    .init = dec_init,
    .parse = dec_parse,
    .take = dec_take,
    .input = &parpy_value_mpz,
    .cost = dec_cost,
    .result_bytes = dec_result_bytes,
    .scratch_bytes = dec_scratch_bytes,
    .prepare = dec_prepare,
    .compute = dec_compute,
    .build = dec_build,
    .give = dec_give,
    .output = &parpy_value_text,
    .release = dec_release,
    .errors = dec_errors,
    .split_threads = dec_split_threads,
    .compute_split = dec_compute_split,
};

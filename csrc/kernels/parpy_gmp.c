/* GMP support: allocation that recovers, Python int <-> mpz, 64-bit
 * arguments, the "mpz" value type. Used by the kernels that compute on GMP
 * integers (fib.c, decimal.c).
 *
 * GMP calls abort() when its allocator fails. parpy validates sizes before
 * any work, but under an address-space limit or when other threads hold
 * memory an allocation can still fail. Compute functions therefore set a
 * per-thread recovery point (parpy_gmp_recover) around GMP calls; the
 * allocation functions installed here longjmp to it on failure, and the
 * kernel returns its out-of-memory code. Blocks GMP had allocated as scratch
 * inside the failing call are lost: a bounded leak on a path that is already
 * out of memory. Outside a recovery point the behaviour is GMP's own: a
 * message and abort(). The functions are process-wide, so they are only
 * installed when GMP's defaults (plain malloc/realloc/free, like these) are
 * still in place; a process whose GMP allocator someone else replaced keeps
 * theirs.
 *
 * Python int <-> mpz never goes through decimal text. An mpz becomes an int
 * by writing its limbs straight into the digits of an int allocated with the
 * GIL held (PEP 757's PyLongWriter on 3.14+); an int becomes an mpz by
 * mpz_import of its digit array, read without the GIL while a reference is
 * held (PyLong_Export on 3.14+).
 */
#include "parpy_gmp.h"

#include <stdio.h>
#include <stdlib.h>

#if GMP_NAIL_BITS != 0 || GMP_NUMB_BITS != 64
#error "parpy assumes 64-bit GMP limbs without nails"
#endif

_Thread_local jmp_buf *parpy_gmp_recover PARPY_TLS_MODEL = NULL;

/* ---- allocation ----------------------------------------------------------- */

/* GMP's default allocation functions (exported by libgmp, declared only in
   its internal headers). */
extern void *__gmp_default_allocate(size_t);
extern void *__gmp_default_reallocate(void *, size_t, size_t);
extern void __gmp_default_free(void *, size_t);

static void
out_of_memory(void)
{
    jmp_buf *recover = parpy_gmp_recover;
    if (recover != NULL) {
        parpy_gmp_recover = NULL;
        longjmp(*recover, 1);
    }
    fprintf(stderr, "GNU MP: Cannot allocate memory\n");
    abort();
}

static void *
gmp_allocate(size_t size)
{
    void *p = malloc(size);
    if (p == NULL) {
        out_of_memory();
    }
    return p;
}

static void *
gmp_reallocate(void *old, size_t old_size, size_t new_size)
{
    (void)old_size;
    void *p = realloc(old, new_size);
    if (p == NULL) {
        out_of_memory(); /* old is still valid and owned by its mpz */
    }
    return p;
}

static void
gmp_free(void *p, size_t size)
{
    (void)size;
    free(p);
}

static void
mpz_value_drop(parpy_value *value)
{
    mpz_clear(parpy_value_mpz_ptr(value));
}

const parpy_value_type parpy_value_mpz = {.name = "mpz", .drop = mpz_value_drop};

int
parpy_gmp_init(PyObject *module)
{
    _Static_assert(sizeof(mpz_t) <= PARPY_VALUE_SIZE, "an mpz_t fits in a parpy_value");
    void *(*alloc)(size_t);
    void *(*realloc_)(void *, size_t, size_t);
    void (*free_)(void *, size_t);
    mp_get_memory_functions(&alloc, &realloc_, &free_);
    if (alloc == __gmp_default_allocate && realloc_ == __gmp_default_reallocate &&
        free_ == __gmp_default_free) {
        mp_set_memory_functions(gmp_allocate, gmp_reallocate, gmp_free);
    }
    if (parpy_intconv_init() < 0) {
        return -1;
    }
    if (PyObject_HasAttrString(module, "gmp_version")) {
        return 0;
    }
    return PyModule_AddStringConstant(module, "gmp_version", gmp_version);
}

/* ---- Python int -> mpz ------------------------------------------------------ */

int
parpy_intview_init(parpy_intview *view, PyObject *obj)
{
    memset(view, 0, sizeof(*view));
#if PY_VERSION_HEX >= 0x030E0000
    if (PyLong_Export(obj, &view->export) < 0) {
        return -1;
    }
    view->digits = view->export.digits;
    view->ndigits = (size_t)view->export.ndigits;
    view->negative = view->export.negative;
    view->value = view->export.value;
#else
    PyLongObject *v = (PyLongObject *)obj;
#if PY_VERSION_HEX >= 0x030C0000
    uintptr_t tag = v->long_value.lv_tag;
    view->ndigits = (size_t)(tag >> _PyLong_NON_SIZE_BITS);
    view->negative = (tag & _PyLong_SIGN_MASK) == 2;
    view->digits = v->long_value.ob_digit;
#else
    Py_ssize_t size = Py_SIZE(v);
    view->ndigits = (size_t)(size < 0 ? -size : size);
    view->negative = size < 0;
    view->digits = v->ob_digit;
#endif
#endif
    view->ref = Py_NewRef(obj);
    return 0;
}

void
parpy_intview_release(parpy_intview *view)
{
    if (view->ref == NULL) {
        return;
    }
#if PY_VERSION_HEX >= 0x030E0000
    PyLong_FreeExport(&view->export);
#endif
    Py_CLEAR(view->ref);
}

uint64_t
parpy_intview_bits(const parpy_intview *view)
{
    if (view->digits == NULL) {
        uint64_t m = view->value < 0 ? -(uint64_t)view->value : (uint64_t)view->value;
        return m == 0 ? 0 : 64 - (uint64_t)__builtin_clzll(m);
    }
    if (view->ndigits == 0) {
        return 0;
    }
    const digit *d = view->digits;
    uint64_t top = d[view->ndigits - 1];
    uint64_t topbits = top == 0 ? 0 : 64 - (uint64_t)__builtin_clzll(top);
    return (uint64_t)(view->ndigits - 1) * PyLong_SHIFT + topbits;
}

void
parpy_intview_to_mpz(const parpy_intview *view, mpz_ptr z)
{
    if (view->digits == NULL) {
        uint64_t m = view->value < 0 ? -(uint64_t)view->value : (uint64_t)view->value;
        mpz_import(z, 1, -1, sizeof(m), 0, 0, &m);
    }
    else {
        mpz_import(z, view->ndigits, -1, sizeof(digit), 0, 8 * sizeof(digit) - PyLong_SHIFT,
                   view->digits);
    }
    if (view->negative) {
        mpz_neg(z, z);
    }
}

/* ---- arguments ------------------------------------------------------------- */

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

/* ---- mpz -> Python int ------------------------------------------------------- */

#if PY_VERSION_HEX >= 0x030E0000
#define PARPY_LONG_WRITER 1
#endif

typedef digit parpy_digit;

/* ---- sizes -------------------------------------------------------------- */

/* Digits needed for the limbs of a number of at most nbits bits; the
   conversion writes whole limbs, so this covers the top limb entirely. */
static size_t
capacity_for_bits(uint64_t nbits)
{
    uint64_t nlimbs = (nbits + 63) / 64;
    return (size_t)((nlimbs * 64 + PyLong_SHIFT - 1) / PyLong_SHIFT);
}

/* ---- limbs -> digits ---------------------------------------------------- */

/* Writes the digits of the nlimbs limbs into out (room for
   capacity_for_bits(64 * nlimbs)). Returns the count without high zeros. */
static size_t
limbs_to_digits(const mp_limb_t *limbs, size_t nlimbs, parpy_digit *out)
{
    const uint64_t mask = ((uint64_t)1 << PyLong_SHIFT) - 1;
    uint64_t acc = 0; /* accbits < PyLong_SHIFT bits carried to the next limb */
    int accbits = 0;
    size_t k = 0;
    for (size_t i = 0; i < nlimbs; i++) {
        uint64_t limb = limbs[i];
        out[k++] = (parpy_digit)((acc | (limb << accbits)) & mask);
        int taken = PyLong_SHIFT - accbits;
        uint64_t rest = limb >> taken;
        int restbits = 64 - taken;
        while (restbits >= PyLong_SHIFT) {
            out[k++] = (parpy_digit)(rest & mask);
            rest >>= PyLong_SHIFT;
            restbits -= PyLong_SHIFT;
        }
        acc = rest;
        accbits = restbits;
    }
    if (accbits) {
        out[k++] = (parpy_digit)acc;
    }
    while (k > 0 && out[k - 1] == 0) {
        k--;
    }
    return k;
}

/* ---- the buffer --------------------------------------------------------- */

int
parpy_intbuf_alloc(parpy_intbuf *buf, uint64_t nbits)
{
    buf->handle = NULL;
    buf->digits = NULL;
    buf->used = 0;
    if (nbits == 0) {
        nbits = 1;
    }
    size_t cap = capacity_for_bits(nbits);
    if ((uint64_t)cap > (uint64_t)PY_SSIZE_T_MAX / sizeof(parpy_digit)) {
        PyErr_NoMemory();
        return -1;
    }
#ifdef PARPY_LONG_WRITER
    void *digits = NULL;
    PyLongWriter *writer = PyLongWriter_Create(0, (Py_ssize_t)cap, &digits);
    if (writer == NULL) {
        return -1;
    }
    buf->handle = writer;
    buf->digits = digits;
#else
    PyLongObject *obj = _PyLong_New((Py_ssize_t)cap);
    if (obj == NULL) {
        return -1;
    }
    buf->handle = obj;
#if PY_VERSION_HEX >= 0x030C0000
    buf->digits = obj->long_value.ob_digit;
#else
    buf->digits = obj->ob_digit;
#endif
#endif
    buf->capacity = cap;
    return 0;
}

int
parpy_intbuf_store(parpy_intbuf *buf, mpz_srcptr z)
{
    size_t nlimbs = mpz_size(z);
    if (capacity_for_bits((uint64_t)nlimbs * 64) > buf->capacity) {
        return -1;
    }
    buf->used = limbs_to_digits(mpz_limbs_read(z), nlimbs, (parpy_digit *)buf->digits);
    return 0;
}

PyObject *
parpy_intbuf_finish(parpy_intbuf *buf)
{
    size_t used = buf->used;
    const parpy_digit *d = (const parpy_digit *)buf->digits;
    PyObject *result = NULL;
#ifdef PARPY_LONG_WRITER
    /* Digits past used are zero-filled so that the writer sees the value. */
    memset((parpy_digit *)buf->digits + used, 0, (buf->capacity - used) * sizeof(parpy_digit));
    result = PyLongWriter_Finish((PyLongWriter *)buf->handle);
    buf->handle = NULL;
    (void)d;
#else
    if (used <= 2) {
        /* Small values come from PyLong_FromUnsignedLongLong, which knows the
           small-int cache. */
        uint64_t v = 0;
        for (size_t i = used; i > 0; i--) {
            v = (v << PyLong_SHIFT) | d[i - 1];
        }
        Py_CLEAR(buf->handle);
        result = PyLong_FromUnsignedLongLong(v);
    }
    else {
        PyLongObject *obj = (PyLongObject *)buf->handle;
#if PY_VERSION_HEX >= 0x030C0000
        obj->long_value.lv_tag = (uintptr_t)used << _PyLong_NON_SIZE_BITS;
#else
        Py_SET_SIZE(obj, (Py_ssize_t)used);
#endif
        result = (PyObject *)obj;
        buf->handle = NULL;
    }
#endif
    buf->digits = NULL;
    return result;
}

void
parpy_intbuf_discard(parpy_intbuf *buf)
{
    if (buf->handle != NULL) {
#ifdef PARPY_LONG_WRITER
        PyLongWriter_Discard((PyLongWriter *)buf->handle);
#else
        Py_DECREF((PyObject *)buf->handle);
#endif
        buf->handle = NULL;
    }
    buf->digits = NULL;
}

int
parpy_intconv_init(void)
{
#ifdef PARPY_LONG_WRITER
    const PyLongLayout *layout = PyLong_GetNativeLayout();
    if (layout->bits_per_digit != PyLong_SHIFT || layout->digit_size != sizeof(parpy_digit) ||
        layout->digits_order != -1) {
        PyErr_SetString(PyExc_ImportError, "parpy: unexpected int digit layout");
        return -1;
    }
#endif
    return 0;
}

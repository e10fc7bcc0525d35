/* mpz -> Python int in one O(size) pass, never through decimal text.
 *
 * The int is allocated with the GIL held, its digits are written straight
 * from the mpz limbs without the GIL (the object is not yet visible to any
 * other thread), and it is normalised with the GIL held again. CPython
 * 3.14+ does this through the public PyLongWriter API (PEP 757); 3.11-3.13
 * through _PyLong_New and the digit array.
 */
#include "parpy.h"

#if GMP_NAIL_BITS != 0 || GMP_NUMB_BITS != 64
#error "parpy assumes 64-bit GMP limbs without nails"
#endif

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

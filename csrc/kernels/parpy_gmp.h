/* GMP support for the kernels that compute on GMP integers: GMP memory that
 * recovers from a failed allocation, Python int <-> mpz in one O(size) pass,
 * 64-bit argument parsing, and the "mpz" value type.
 */
#ifndef PARPY_GMP_H
#define PARPY_GMP_H

#include "parpy.h"

#include <gmp.h>
#include <setjmp.h>

/* Once per module (every GMP kernel's init calls it): installs the
   allocation functions below and adds gmp_version to the module. Returns 0,
   or -1 with an exception set. */
int parpy_gmp_init(PyObject *module);

/* ---- recovering from a failed GMP allocation ----------------------------- */

/* Static TLS: one slot per thread, no dynamic TLS block (which also keeps
   LeakSanitizer's scan of dynamic TLS, broken on recent glibc, away). */
#define PARPY_TLS_MODEL __attribute__((tls_model("initial-exec")))
/* Per-thread recovery point for a failed GMP allocation; NULL when none.
   Compute sets it around GMP calls (setjmp); a failed allocation longjmps
   there instead of GMP's abort(). */
extern _Thread_local jmp_buf *parpy_gmp_recover PARPY_TLS_MODEL;

/* ---- the "mpz" value type ------------------------------------------------ */

/* An initialised mpz_t that the value owns. */
extern const parpy_value_type parpy_value_mpz;

static inline mpz_ptr
parpy_value_mpz_ptr(parpy_value *value)
{
    return (mpz_ptr)(void *)value->bytes;
}

/* ---- Python int <-> mpz --------------------------------------------------- */

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

/* The digits of a Python int, readable without the GIL while the view is
   held (ints are immutable). */
typedef struct {
    PyObject *ref;      /* strong reference to the int */
    const void *digits; /* least significant first; NULL when value is used */
    size_t ndigits;
    int negative;
    int64_t value; /* when digits is NULL */
#if PY_VERSION_HEX >= 0x030E0000
    PyLongExport export;
#endif
} parpy_intview;

/* GIL held. Views obj, an int (subclasses included). Returns 0, or -1 with
   an exception set. */
int parpy_intview_init(parpy_intview *view, PyObject *obj);
/* GIL held (for views from parse). */
void parpy_intview_release(parpy_intview *view);
/* Bits of the absolute value. */
uint64_t parpy_intview_bits(const parpy_intview *view);
/* No GIL. z = the int's value (GMP allocates: call under parpy_gmp_recover). */
void parpy_intview_to_mpz(const parpy_intview *view, mpz_ptr z);

/* Checks at import that CPython's int layout is the one assumed here.
   Returns 0, or -1 with an exception set. */
int parpy_intconv_init(void);

/* ---- arguments ------------------------------------------------------------ */

/* Parses a Python int into a uint64 argument named name. bool, float and
   other non-ints raise TypeError, negatives ValueError, values of 2**64 and
   more OverflowError; errors from __index__ pass unchanged. Returns 0 or -1
   with an exception set. */
int parpy_parse_u64(PyObject *obj, const char *name, uint64_t *out);

#endif /* PARPY_GMP_H */
